"""Self-managed certificates rotate under admission load with zero failed calls.

Two replicas share one Secret and a Lease with short durations; the webhooks (failurePolicy Fail)
point at replica A. With --cert-lifetime 30s, --ca-lifetime 80s and --cert-sync-interval 1s the
leader renews the serving certificate about every 19 s and renews the CA about 51 s after the
Secret was made (new CA joins the bundle, the leaf is reissued by it, the old CA leaves). While
that happens, two client threads drive admission traffic through the real API server and an
observer samples, several times a second, the Secret, the caBundle in both webhook
configurations, and the certificate each replica serves (verified against that caBundle, as the
API server verifies it).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from apicheck import assert_healthy, webhook_health
from opslib import (MUTATOR_NAME, VALIDATOR_NAME, AdmissionLoad, BackupGuard, cert_not_after,
                    pem_certificates, pem_fingerprint, register_webhooks, served_certificate,
                    wait_until)
from bgtest.procs import Loop  # noqa: E402 - tests/ is on sys.path after opslib

NAMESPACE = "longhorn-system"
SECRET = "ops-rotation-tls"
LEASE = "ops-rotation"
CERT_LIFETIME = "30s"
# Not 90s: with 90s the leaf reissued by the new CA expires in the same second as the old CA,
# and the expiry gauges could not tell them apart.
CA_LIFETIME = "80s"
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
        # -no_check_time: the leaves of this test have expired by the time they are classified.
        r = subprocess.run(["openssl", "verify", "-no_check_time", "-CAfile", path, leaf],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return pem_fingerprint(ca)
    return ""


class Observer(Loop):
    """Samples the Secret, the caBundles and the served certificates until stopped."""

    def __init__(self, kube, replicas, interval=0.3):
        super().__init__()
        self.kube = kube
        self.replicas = replicas
        self.interval = interval
        self.samples = 0
        self.secret_leafs = []      # (t, fingerprint, pem, ca bundle pem at that time)
        self.secret_ca_counts = []  # ca.crt certificate count per sample
        self.bundle_counts = []     # caBundle certificate count per sample (mutating config)
        # The two configurations are two objects written one after the other, so a sample can
        # fall between the writes. What must not happen is that they stay apart: each span of
        # samples in which they disagree is kept as [start, end] (end None while it lasts).
        self.bundle_mismatch = []
        self.last_sample = 0.0
        self.served = {r.name: [] for r in replicas}  # fingerprints per sample
        self.handshakes = 0
        self.verify_failures = []

    def step(self):
        secret = self.kube.secret_data(NAMESPACE, SECRET) or {}
        tls, ca = secret.get("tls.crt", ""), secret.get("ca.crt", "")
        fp = pem_fingerprint(tls)
        if not self.secret_leafs or self.secret_leafs[-1][1] != fp:
            self.secret_leafs.append((time.monotonic(), fp, tls, ca))
        self.secret_ca_counts.append(len(pem_certificates(ca)))
        bundles = self.kube.ca_bundles()
        bundle = bundles.get(MUTATOR_NAME, "")
        now = self.last_sample = time.monotonic()
        open_span = self.bundle_mismatch and self.bundle_mismatch[-1][1] is None
        if bundles.get(VALIDATOR_NAME, "") != bundle:
            if not open_span:
                self.bundle_mismatch.append([now, None])
        elif open_span:
            self.bundle_mismatch[-1][1] = now
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

    def error_text(self, e: Exception) -> str:
        return f"{time.monotonic():.1f}: {type(e).__name__}: {e}"


@pytest.fixture(scope="module")
def replicas(binary, kube, kubeconfig, register_sh, state_dir, load_namespace):
    work = os.path.join(state_dir, "rotation")
    os.makedirs(work, exist_ok=True)
    # Throwaway CA at registration: the leader must replace it with its own.
    throwaway = os.path.join(work, "throwaway")
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
    a = BackupGuard(binary, "rotation-a", work, common)
    b = BackupGuard(binary, "rotation-b", work, common)
    register_webhooks(register_sh, kubeconfig, a.url, os.path.join(throwaway, "ca.crt"))
    # Start from no Secret, so the lifetimes (and the CA renewal) count from now.
    kube.request("DELETE", kube.secret(NAMESPACE, SECRET))
    try:
        a.start()
        b.start()
        a.wait_ready()
        b.wait_ready()
        yield a, b, work
    finally:
        bad = [f"{r.name} exited with {rc} on SIGTERM:\n{r.log_tail(15)}"
               for r, rc in ((r, r.stop()) for r in (a, b)) if rc not in (0, None)]
        assert not bad, "\n".join(bad)


class Scenario:
    """What one run of rotation-under-load produced; the tests below judge it."""


@pytest.fixture(scope="module")
def rotation(kube, replicas, load_namespace, figures) -> Scenario:
    a, b, work = replicas
    sc = Scenario()
    sc.a, sc.b = a, b
    sc.pids = {a.name: a.pid, b.name: b.pid}

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
    sc.leaders = {r.name: r.metrics().sum("backup_guard_leader") for r in (a, b)}
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
            if len(load.failures) > 50:
                break  # plenty of evidence already
    finally:
        load.stop()
        observer.stop()
        load.cleanup()
    api_after = kube.apiserver_metrics()
    sc.t_start, sc.load, sc.observer = t_start, load, observer

    # Classify the leaf changes: same CA (renewal) or a new CA (rotation step 2).
    changes = []
    prev_signer = None
    for t, fp, pem, ca_bundle in observer.secret_leafs:
        signer = signer_of(pem, pem_certificates(ca_bundle), work)
        if prev_signer is not None:
            kind = ("unverified" if not signer or not prev_signer
                    else "renewal" if signer == prev_signer else "new-ca")
            changes.append({"at_s": round(t - t_start, 1), "leaf": fp, "kind": kind})
        prev_signer = signer
    sc.changes = changes
    sc.renewals = sum(1 for c in changes if c["kind"] == "renewal")
    sc.ca_rotations = sum(1 for c in changes if c["kind"] == "new-ca")
    sc.ca_seq = collapse(observer.secret_ca_counts)
    sc.bundle_seq = collapse(observer.bundle_counts)
    sc.served_seq = {name: collapse(seq) for name, seq in observer.served.items()}

    # Before the first change, during the rotation, after the last one.
    t_first = observer.secret_leafs[1][0] if len(observer.secret_leafs) > 1 else t_start
    t_last = observer.secret_leafs[-1][0]
    sc.windows = {"before": load.ok_between(0, t_first), "during": load.ok_between(t_first, t_last),
                  "after": load.ok_between(t_last, float("inf"))}

    sc.health = webhook_health(api_before, api_after)
    sc.reloads_delta = {r.name: r.metrics().sum("backup_guard_certificate_reloads_total",
                                                result="success") - reloads_before[r.name]
                        for r in (a, b)}
    sc.admissions = a.metrics().sum("backup_guard_admission_requests_total") - admissions_before
    figures["self_managed_rotation"] = {
        "load": load.summary(),
        "webhook_calls_sent_by_apiserver": sc.health["requests"],
        "webhook_answer_codes_seen_by_apiserver": sc.health["codes"],
        "webhook_calls_answered_by_replica_a": int(sc.admissions),
        "secret_leaf_changes": changes,
        "leaf_renewals": sc.renewals,
        "ca_rotations": sc.ca_rotations,
        "secret_ca_count_sequence": sc.ca_seq,
        "webhook_cabundle_count_sequence": sc.bundle_seq,
        "served_certificates_per_replica": {n: len(s) for n, s in sc.served_seq.items()},
        "observer_samples": observer.samples,
        "verified_handshakes": observer.handshakes - len(observer.verify_failures),
        "reloads_success_delta": sc.reloads_delta,
        "windows_ok_failed": sc.windows,
        "leader_at_start": [n for n, v in sc.leaders.items() if v == 1],
        "leader_at_end": [r.name for r in (a, b) if r.metrics().sum("backup_guard_leader") == 1],
        "server_warnings": {r.name: r.log_problems() for r in (a, b)},
    }
    return sc


def test_zero_failed_admission_calls_during_rotation(rotation):
    sc = rotation
    load = sc.load
    failures = [f"{f.op} (thread {f.thread}, t+{f.at - sc.t_start:.1f}s): {f.detail}"
                for f in load.failures[:10]]
    assert not load.failures, f"{len(load.failures)} failed admission calls, first ones:\n" + \
        "\n".join(failures) + f"\nreplica A log tail:\n{sc.a.log_tail(20)}"
    for name, (ok, bad) in sc.windows.items():
        assert ok > 0 and bad == 0, f"window {name}: {sc.windows}"
    assert load.total() >= 500, f"too little load to mean anything: {load.summary()}"
    # The API server saw only successful calls (and the denials asked for), never fell open,
    # and replica A answered exactly the calls it sent.
    assert_healthy(sc.health, load.expected_denials())
    assert sc.admissions == sum(sc.health["requests"].values()), \
        f"replica A counted {sc.admissions} admission requests, the API server sent {sc.health['requests']}"


def test_rotation_steps_and_served_certificates(kube, rotation):
    sc = rotation
    a, b, observer = sc.a, sc.b, sc.observer
    assert sorted(sc.leaders.values()) == [0, 1], f"exactly one leader expected: {sc.leaders}"
    assert not observer.errors, f"observer errors: {observer.errors[:5]}"
    assert not observer.verify_failures, \
        f"served certificate did not verify against the caBundle: {observer.verify_failures[:5]}"
    # Each configuration is written within one sync (1 s here); allow a few for a retried write.
    long_apart = [(round(start, 1), round((end or observer.last_sample) - start, 1))
                  for start, end in observer.bundle_mismatch
                  if (end or observer.last_sample) - start > 5]
    assert not long_apart, \
        f"the two webhook configurations carried different caBundles for more than 5 s: {long_apart}"
    assert not [c for c in sc.changes if c["kind"] == "unverified"], \
        f"a leaf in the Secret was not signed by a CA of the Secret's own ca.crt: {sc.changes}"
    assert sc.renewals >= 2, f"expected at least two leaf renewals in {DEADLINE}s, saw {sc.changes}"
    assert sc.ca_rotations >= 1 and has_subsequence(sc.ca_seq, [1, 2, 1]), \
        f"expected a CA rotation (ca.crt 1 -> 2 -> 1 certificates), saw {sc.ca_seq}, leaf changes {sc.changes}"
    assert has_subsequence(sc.bundle_seq, [1, 2, 1]), \
        f"the webhook caBundle should go 1 -> 2 -> 1 certificates, saw {sc.bundle_seq}"
    # Same processes throughout, each now serving the Secret's current leaf.
    secret = kube.secret_data(NAMESPACE, SECRET)
    for r in (a, b):
        assert r.running() and r.pid == sc.pids[r.name], f"{r.name} restarted or exited"
        assert len(sc.served_seq[r.name]) >= 4, \
            f"{r.name} should have served at least 4 certificates, saw {sc.served_seq[r.name]}"
        assert served_certificate(r.port, secret["ca.crt"]).fingerprint == \
            pem_fingerprint(secret["tls.crt"]), f"{r.name} does not serve the Secret's leaf"
        assert sc.reloads_delta[r.name] >= 3, \
            f"{r.name}: reloads_total{{result=success}} went up by {sc.reloads_delta[r.name]}, expected >= 3"


def test_expiry_gauges_describe_certificates_in_use(kube, rotation):
    """After the rotation the gauges show the served leaf and the earliest CA of the current
    bundle (only the new CA is left in it), on every replica."""
    sc = rotation
    secret = kube.secret_data(NAMESPACE, SECRET)
    bundle = [cert_not_after(c) for c in pem_certificates(secret["ca.crt"])]
    ca_not_after = min(bundle)
    leaf_not_after = cert_not_after(secret["tls.crt"])

    def gauges(r):
        m = r.metrics()
        return (m.sum("backup_guard_certificate_expiry_timestamp_seconds", certificate="serving"),
                m.sum("backup_guard_certificate_expiry_timestamp_seconds", certificate="ca"))
    seen_cas = {}  # every CA the Secret carried during the run: notAfter -> fingerprint
    for _, _, _, ca_bundle in sc.observer.secret_leafs:
        for c in pem_certificates(ca_bundle):
            seen_cas[cert_not_after(c)] = pem_fingerprint(c)
    current = {pem_fingerprint(c) for c in pem_certificates(secret["ca.crt"])}
    problems = []
    for r in (sc.a, sc.b):
        try:
            wait_until(f"{r.name}'s expiry gauges to match the Secret",
                       lambda: gauges(r) == (leaf_not_after, ca_not_after), 5, 0.5)
        except AssertionError:
            serving, ca = gauges(r)
            problems.append(
                f"{r.name}: serving={serving:.0f} ca={ca:.0f}, but the Secret's leaf expires at "
                f"{leaf_not_after} and its CA bundle at {bundle} (ca gauge {ca - ca_not_after:+.0f}s off"
                + ("; it is the notAfter of a CA that has left the bundle"
                   if int(ca) in seen_cas and seen_cas[int(ca)] not in current else "") + ")")
    assert not problems, "backup_guard_certificate_expiry_timestamp_seconds after the CA rotation:\n" + \
        "\n".join(problems)
