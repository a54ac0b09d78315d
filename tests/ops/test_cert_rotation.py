"""Self-managed certificates rotate under admission load with zero failed calls.

Two replicas share one Secret and a Lease with short durations; the webhooks (failurePolicy Fail)
point at replica A. With --cert-lifetime 30s, --ca-lifetime 90s and --cert-sync-interval 1s the
leader renews the serving certificate about every 20 s and renews the CA about 60 s after the
Secret was made (new CA joins the bundle, the leaf is reissued by it, the old CA leaves). While
that happens, two client threads drive admission traffic through the real API server and an
observer samples, several times a second, the Secret, the caBundle in both webhook
configurations, and the certificate each replica serves (verified against that caBundle, as the
API server verifies it).
"""
from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from apicheck import assert_healthy, webhook_health
from opslib import (MUTATOR_NAME, VALIDATOR_NAME, AdmissionLoad, BackupGuard, pem_certificates,
                    pem_fingerprint, register_webhooks, served_certificate, wait_until)

NAMESPACE = "longhorn-system"
SECRET = "ops-rotation-tls"
LEASE = "ops-rotation"
CERT_LIFETIME = "30s"
CA_LIFETIME = "90s"
DEADLINE = 120  # seconds of load at most to see two leaf renewals and a CA rotation
AFTER = 4  # seconds of load after the last change


def collapse(seq):
    out = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


def has_subsequence(seq, pattern) -> bool:
    it = iter(seq)
    return all(any(x == p for x in it) for p in pattern)


def signer_of(leaf_pem: str, ca_pems: list[str], work_dir: str) -> str:
    """Fingerprint of the CA among ca_pems that verifies leaf_pem ('' if none)."""
    leaf = os.path.join(work_dir, "verify-leaf.pem")
    with open(leaf, "w") as f:
        f.write(leaf_pem)
    for i, ca in enumerate(ca_pems):
        path = os.path.join(work_dir, f"verify-ca{i}.pem")
        with open(path, "w") as f:
            f.write(ca)
        r = subprocess.run(["openssl", "verify", "-CAfile", path, leaf], capture_output=True, text=True)
        if r.returncode == 0:
            return pem_fingerprint(ca)
    return ""


class Observer:
    """Samples the Secret, the caBundles and the served certificates until stopped."""

    def __init__(self, kube, replicas, interval=0.3):
        self.kube = kube
        self.replicas = replicas
        self.interval = interval
        self.stop_event = threading.Event()
        self.samples = 0
        self.secret_leafs = []      # (t, fingerprint, pem, ca bundle pem at that time)
        self.secret_ca_counts = []  # ca.crt certificate count per sample
        self.bundle_counts = []     # caBundle certificate count per sample (mutating config)
        self.bundle_mismatch = []   # samples where the two configurations disagree
        self.served = {r.name: [] for r in replicas}  # fingerprints per sample
        self.handshakes = 0
        self.verify_failures = []
        self.errors = []
        self.thread = threading.Thread(target=self.run, name="observer", daemon=True)

    def sample(self):
        secret = self.kube.secret_data(NAMESPACE, SECRET) or {}
        tls, ca = secret.get("tls.crt", ""), secret.get("ca.crt", "")
        fp = pem_fingerprint(tls)
        if not self.secret_leafs or self.secret_leafs[-1][1] != fp:
            self.secret_leafs.append((time.monotonic(), fp, tls, ca))
        self.secret_ca_counts.append(len(pem_certificates(ca)))
        bundles = self.kube.ca_bundles()
        bundle = bundles.get(MUTATOR_NAME, "")
        if bundles.get(VALIDATOR_NAME, "") != bundle:
            self.bundle_mismatch.append(time.monotonic())
        self.bundle_counts.append(len(pem_certificates(bundle)))
        for r in self.replicas:
            for hook_bundle in {bundle, bundles.get(VALIDATOR_NAME, "")}:
                served = served_certificate(r.port, hook_bundle)
                self.handshakes += 1
                if not served.verified:
                    self.verify_failures.append(
                        f"{r.name} serves {served.fingerprint}, caBundle has "
                        f"{[pem_fingerprint(c) for c in pem_certificates(hook_bundle)]}: {served.error}")
            self.served[r.name].append(served.fingerprint)
        self.samples += 1

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.sample()
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(f"{time.monotonic():.1f}: {type(e).__name__}: {e}")
            self.stop_event.wait(self.interval)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)


@pytest.fixture
def replicas(binary, kube, kubeconfig, register_sh, work_dir, load_namespace):
    # Throwaway CA at registration: the leader must replace it with its own.
    throwaway = os.path.join(work_dir, "throwaway")
    subprocess.run([binary, "certs", "generate", "--out", throwaway, "--dns", "localhost"],
                   check=True, capture_output=True)
    common = ["--kubeconfig", kubeconfig, "--namespace", NAMESPACE,
              "--cert-secret", SECRET, "--service-name", "backup-guard",
              "--cert-dns", "localhost", "--cert-ip", "127.0.0.1",
              "--mutating-webhook-configuration", "backup-guard-mutating",
              "--validating-webhook-configuration", "backup-guard-validating",
              "--cert-lifetime", CERT_LIFETIME, "--ca-lifetime", CA_LIFETIME,
              "--cert-sync-interval", "1s",
              "--leader-election-id", LEASE, "--leader-election-lease-duration", "4s",
              "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "1s"]
    a = BackupGuard(binary, "rotation-a", work_dir, common)
    b = BackupGuard(binary, "rotation-b", work_dir, common)
    register_webhooks(register_sh, kubeconfig, a.url, os.path.join(throwaway, "ca.crt"))
    # Start from no Secret, so the lifetimes (and the CA renewal) count from now.
    kube.request("DELETE", kube.secret(NAMESPACE, SECRET))
    try:
        a.start()
        b.start()
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        bad = [f"{r.name} exited with {rc} on SIGTERM:\n{r.log_tail(15)}"
               for r, rc in ((r, r.stop()) for r in (a, b)) if rc not in (0, None)]
        assert not bad, "\n".join(bad)


def test_self_managed_rotation_under_load(kube, replicas, work_dir, load_namespace, figures):
    a, b = replicas
    pids = {a.name: a.pid, b.name: b.pid}

    # The leader wrote its CA into both configurations and the replicas serve the Secret's leaf.
    def settled():
        secret = kube.secret_data(NAMESPACE, SECRET)
        if not secret:
            return False
        bundles = kube.ca_bundles()
        return (bundles.get(MUTATOR_NAME) == secret["ca.crt"] == bundles.get(VALIDATOR_NAME)
                and all(served_certificate(r.port).fingerprint == pem_fingerprint(secret["tls.crt"])
                        for r in (a, b)))
    wait_until("the caBundles to hold the Secret's CA and both replicas to serve its leaf",
               settled, 30, 0.3)
    leaders = {r.name: r.metrics().sum("backup_guard_leader") for r in (a, b)}
    assert sorted(leaders.values()) == [0, 1], f"exactly one leader expected: {leaders}"
    reloads_before = {r.name: r.metrics().sum("backup_guard_certificate_reloads_total",
                                              result="success") for r in (a, b)}
    admissions_before = a.metrics().sum("backup_guard_admission_requests_total")

    api_before = kube.apiserver_metrics()
    observer = Observer(kube, [a, b]).start()
    load = AdmissionLoad(kube, load_namespace, "rot", threads=2, rate=12).start()
    t_start = time.monotonic()
    done_at = None
    try:
        while time.monotonic() - t_start < DEADLINE:
            time.sleep(0.5)
            leafs = len(observer.secret_leafs)
            ca_seq = collapse(observer.secret_ca_counts)
            if done_at is None and leafs >= 4 and has_subsequence(ca_seq, [1, 2, 1]):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= AFTER:
                break
            if load.failures and len(load.failures) > 50:
                break  # plenty of evidence already
    finally:
        load.stop()
        observer.stop()
        load.cleanup()
    api_after = kube.apiserver_metrics()

    # Classify the leaf changes: same CA (renewal) or a new CA (rotation step 2).
    changes = []
    prev_signer = None
    for t, fp, pem, ca_bundle in observer.secret_leafs:
        signer = signer_of(pem, pem_certificates(ca_bundle), work_dir)
        if prev_signer is not None:
            changes.append({"at_s": round(t - t_start, 1), "leaf": fp,
                            "kind": "renewal" if signer == prev_signer else "new-ca"})
        prev_signer = signer
    renewals = sum(1 for c in changes if c["kind"] == "renewal")
    ca_rotations = sum(1 for c in changes if c["kind"] == "new-ca")
    ca_seq = collapse(observer.secret_ca_counts)
    bundle_seq = collapse(observer.bundle_counts)
    served_seq = {name: collapse(seq) for name, seq in observer.served.items()}

    # Before the first change, during the rotation, after the last one.
    t_first = observer.secret_leafs[1][0] if len(observer.secret_leafs) > 1 else t_start
    t_last = observer.secret_leafs[-1][0]
    windows = {"before": load.ok_between(0, t_first), "during": load.ok_between(t_first, t_last),
               "after": load.ok_between(t_last, float("inf"))}

    health = webhook_health(api_before, api_after)
    reloads_after = {r.name: r.metrics().sum("backup_guard_certificate_reloads_total",
                                             result="success") for r in (a, b)}
    admissions = a.metrics().sum("backup_guard_admission_requests_total") - admissions_before
    figures["self_managed_rotation"] = {
        "load": load.summary(),
        "webhook_calls_sent_by_apiserver": health["requests"],
        "webhook_answer_codes_seen_by_apiserver": health["codes"],
        "webhook_calls_answered_by_replica_a": int(admissions),
        "secret_leaf_changes": changes,
        "leaf_renewals": renewals,
        "ca_rotations": ca_rotations,
        "secret_ca_count_sequence": ca_seq,
        "webhook_cabundle_count_sequence": bundle_seq,
        "served_certificates_per_replica": {n: len(s) for n, s in served_seq.items()},
        "observer_samples": observer.samples,
        "verified_handshakes": observer.handshakes - len(observer.verify_failures),
        "reloads_success_delta": {n: reloads_after[n] - reloads_before[n] for n in reloads_after},
        "windows_ok_failed": windows,
        "leader": [n for n, v in leaders.items() if v == 1][0],
    }

    failures = [f"{f.op} (thread {f.thread}, t+{f.at - t_start:.1f}s): {f.detail}"
                for f in load.failures[:10]]
    assert not load.failures, f"{len(load.failures)} failed admission calls, first ones:\n" + \
        "\n".join(failures) + f"\nreplica A log tail:\n{a.log_tail(20)}"
    assert not observer.errors, f"observer errors: {observer.errors[:5]}"
    assert not observer.verify_failures, \
        f"served certificate did not verify against the caBundle: {observer.verify_failures[:5]}"
    assert not observer.bundle_mismatch, "the two webhook configurations carried different caBundles"
    assert renewals >= 2, f"expected at least two leaf renewals in {DEADLINE}s, saw {changes}"
    assert ca_rotations >= 1 and has_subsequence(ca_seq, [1, 2, 1]), \
        f"expected a CA rotation (ca.crt 1 -> 2 -> 1 certificates), saw {ca_seq}, leaf changes {changes}"
    assert has_subsequence(bundle_seq, [1, 2, 1]), \
        f"the webhook caBundle should go 1 -> 2 -> 1 certificates, saw {bundle_seq}"
    for name, (before_ok, before_bad) in windows.items():
        assert before_ok > 0 and before_bad == 0, f"window {name}: {windows}"
    assert load.total() >= 500, f"too little load to mean anything: {load.summary()}"

    # Same processes throughout, each now serving the Secret's current leaf.
    for r in (a, b):
        assert r.running() and r.pid == pids[r.name], f"{r.name} restarted or exited"
        assert len(served_seq[r.name]) >= 4, \
            f"{r.name} should have served at least 4 certificates, saw {served_seq[r.name]}"
    secret = kube.secret_data(NAMESPACE, SECRET)
    for r in (a, b):
        assert served_certificate(r.port, secret["ca.crt"]).fingerprint == \
            pem_fingerprint(secret["tls.crt"]), f"{r.name} does not serve the Secret's leaf"
        assert reloads_after[r.name] - reloads_before[r.name] >= 3, \
            f"{r.name}: reloads_total{{result=success}} {reloads_before[r.name]} -> {reloads_after[r.name]}"

    # The API server saw only successful calls, and replica A answered exactly those.
    assert_healthy(health, load.expected_denials())
    assert admissions == sum(health["requests"].values()), \
        f"replica A counted {admissions} admission requests, the API server sent {health['requests']}"
