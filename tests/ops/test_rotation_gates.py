"""The CA rotation waits for what it depends on (issue 14, suspects 5 and 6), under admission load.

Each scenario starts from a Secret made here with a CA that is already old: it became valid 80 s
ago and expires in 70 s, so the leader renews it (step 1) 20 s after the start, and the old CA
still verifies for 50 s after that. The servers run with --cert-sync-interval 1s (steps 2
and 3 need 3 s of overlap each) and long lifetimes for what they issue themselves. Every server
runs under a ServiceAccount token of its own, so a fault is an RBAC rule taken away on the real
API server and given back later:

- step 2 (suspect 5): one replica, the leader; its `update` of the validating configuration is
  denied, so that caBundle keeps only the old CA. The serving certificate must stay with the old
  CA until the bundle read back trusts the new one.
- step 3 (suspect 6): replica A (leader, webhook `mutator`) and replica B (follower, webhook
  `validator`); B's `get` of the Secret is denied after it started, so B keeps serving the old
  leaf (its /readyz stays 200). The old CA must stay in the bundles until B serves a leaf of the
  new CA, which it publishes in the Lease `<secret>-served`.

In both, admission load (opslib.AdmissionLoad, failurePolicy Fail) runs through the rotation,
the fault is held 8 s past the point where a time-only rotation made the step, then lifted; the
rotation must then complete. The figure that matters is the number of failed admission calls.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import time

import pytest
import yaml

from apicheck import assert_healthy, webhook_health
from opslib import (MUTATOR_NAME, VALIDATOR_NAME, AdmissionLoad, BackupGuard, pem_certificates,
                    pem_fingerprint, register_webhooks, served_certificate, wait_until)
from bgtest.procs import Loop  # noqa: E402 - tests/ is on sys.path after opslib

NAMESPACE = "longhorn-system"
HELD_PAST_STEP = 8  # seconds the fault is held after a time-only rotation would have moved on
AFTER = 3  # seconds of load after the rotation completed
# The renewal is due at 2/3 of the CA's 150 s: 20 s after the Secret is made, time enough to
# start the servers and put the fault in place; the old CA then verifies for 50 s more.
CA_AGE, CA_LEFT = 80, 70


# ---- an aged CA made with `openssl ca`, which can backdate ------------------------------------

def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {r.stderr[-1500:]}")
    return r.stdout


def aged_secret(work: str, name: str) -> dict:
    """The certificate Secret as the server writes it, with a CA valid from CA_AGE seconds ago
    to CA_LEFT seconds from now and a leaf of it for every name the servers want."""
    d = os.path.join(work, "aged-ca")
    os.makedirs(os.path.join(d, "new"), exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(f"""[ca]
default_ca = aged
[aged]
dir = {d}
database = {d}/index.txt
serial = {d}/serial
new_certs_dir = {d}/new
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:backup-guard,DNS:backup-guard.{NAMESPACE},DNS:backup-guard.{NAMESPACE}.svc,DNS:backup-guard.{NAMESPACE}.svc.cluster.local,DNS:localhost,IP:127.0.0.1
""")
    now = time.time()
    files = {}
    for part in ("ca", "leaf"):
        key, csr = os.path.join(d, f"{part}.key"), os.path.join(d, f"{part}.csr")
        _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", key])
        _run(["openssl", "req", "-new", "-key", key, "-subj", f"/CN=ops-aged-{part}", "-out", csr])
        files[part] = (key, os.path.join(d, f"{part}.crt"))
    ca_key, ca_crt = files["ca"]
    _run(["openssl", "ca", "-batch", "-config", cnf, "-selfsign", "-keyfile", ca_key,
          "-in", os.path.join(d, "ca.csr"), "-extensions", "ca_ext", "-notext",
          "-startdate", _stamp(now - CA_AGE), "-enddate", _stamp(now + CA_LEFT), "-out", ca_crt])
    leaf_key, leaf_crt = files["leaf"]
    _run(["openssl", "ca", "-batch", "-config", cnf, "-cert", ca_crt, "-keyfile", ca_key,
          "-in", os.path.join(d, "leaf.csr"), "-extensions", "leaf_ext", "-notext",
          "-startdate", _stamp(now - CA_AGE), "-enddate", _stamp(now + 3600), "-out", leaf_crt])

    def b64(path):
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {"app.kubernetes.io/name": "backup-guard"}},
            "data": {"ca.crt": b64(ca_crt), "ca.key": b64(ca_key),
                     "tls.crt": b64(leaf_crt), "tls.key": b64(leaf_key)}}


# ---- an identity per replica, so RBAC can take one permission away from one replica ----------

def server_rules(secret: str, deny: tuple[str, str] | None = None) -> list[dict]:
    """What `serve` needs with self-managed certificates and no processor, minus `deny`
    (verb, resource)."""
    rules = [
        ("longhorn.io", ["backuptargets", "backupvolumes", "backups", "systembackups",
                         "backupbackingimages", "volumes", "settings"], ["get", "list", "watch"]),
        ("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list"]),
        ("coordination.k8s.io", ["leases"], ["get", "list", "create", "update", "patch"]),
        ("", ["secrets"], ["get", "create", "update", "patch"]),
        ("admissionregistration.k8s.io", ["mutatingwebhookconfigurations"],
         ["get", "update", "patch"]),
        ("admissionregistration.k8s.io", ["validatingwebhookconfigurations"],
         ["get", "update", "patch"]),
    ]
    out = []
    for group, resources, verbs in rules:
        if deny and deny[1] in resources:
            verbs = [v for v in verbs if v != deny[0]]
        out.append({"apiGroups": [group], "resources": resources, "verbs": verbs})
    return out


class Identity:
    """A ServiceAccount bound to a ClusterRole of its own, and a kubeconfig with its token."""

    def __init__(self, kube, admin_kubeconfig: str, name: str, secret: str, work: str):
        self.kube, self.name, self.secret = kube, name, secret
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": name, "namespace": NAMESPACE}}
        r = kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", body=sa)
        assert r.status_code in (201, 409), r.text
        self.set_rules(server_rules(secret))
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": name},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": name},
                   "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]}
        r = kube.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                         body=binding)
        assert r.status_code in (201, 409), r.text
        token = kube.ok("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{name}/token",
                        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                              "spec": {"expirationSeconds": 3600}})["status"]["token"]
        with open(admin_kubeconfig) as f:
            admin = yaml.safe_load(f)
        ctx = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
        cluster = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])
        self.kubeconfig = os.path.join(work, f"{name}.kubeconfig")
        with open(self.kubeconfig, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
                            "users": [{"name": name, "user": {"token": token}}],
                            "contexts": [{"name": name, "context": {"cluster": cluster["name"],
                                                                    "user": name}}],
                            "current-context": name}, f)

    def set_rules(self, rules: list[dict]):
        path = f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{self.name}"
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": self.name}, "rules": rules}
        if self.kube.get_or_none(path) is None:
            self.kube.ok("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", body=role)
        else:
            self.kube.ok("PUT", path, body=role)

    def deny(self, verb: str, resource: str):
        self.set_rules(server_rules(self.secret, (verb, resource)))

    def restore(self):
        self.set_rules(server_rules(self.secret))

    def delete(self):
        for path in (f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{self.name}",
                     f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{self.name}",
                     f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{self.name}"):
            self.kube.request("DELETE", path)


# ---- what happened, sampled every 0.3 s -------------------------------------------------------

class Timeline(Loop):
    interval = 0.3

    def __init__(self, kube, secret: str, replicas):
        super().__init__()
        self.kube, self.secret, self.replicas = kube, secret, replicas
        self.samples = []  # dicts: t, cas (in ca.crt), leaf (fp), bundles {hook: fps}, served
        self.routes = {MUTATOR_NAME: replicas[0], VALIDATOR_NAME: replicas[-1]}
        self.handshakes = 0
        self.unverified = []  # fresh handshakes the API server could not have verified

    def step(self):
        data = self.kube.secret_data(NAMESPACE, self.secret) or {}
        bundles = self.kube.ca_bundles()
        s = {"t": time.monotonic(),
             "cas": [pem_fingerprint(c) for c in pem_certificates(data.get("ca.crt", ""))],
             "leaf": pem_fingerprint(data.get("tls.crt", "")),
             "bundles": {h: [pem_fingerprint(c) for c in pem_certificates(b)]
                         for h, b in bundles.items()},
             "served": {r.name: served_certificate(r.port).fingerprint for r in self.replicas}}
        # A fresh handshake as the API server would make it to each webhook's replica, verified
        # against that webhook's caBundle: the API server keeps its connections alive, so calls
        # only fail once it opens a new one (restart, another API server, a changed client).
        for hook, replica in self.routes.items():
            if bundles.get(hook):
                served = served_certificate(replica.port, bundles[hook])
                self.handshakes += 1
                if not served.verified:
                    self.unverified.append(f"{hook} -> {replica.name}: {served.error}")
        self.samples.append(s)

    def last(self) -> dict:
        return self.samples[-1] if self.samples else {}

    def first_time(self, predicate):
        return next((s["t"] for s in self.samples if predicate(s)), None)


def common_args(identity: Identity, secret: str, lease: str) -> list[str]:
    return ["--kubeconfig", identity.kubeconfig, "--namespace", NAMESPACE,
            "--cert-secret", secret, "--service-name", "backup-guard",
            "--cert-dns", "localhost", "--cert-ip", "127.0.0.1",
            "--mutating-webhook-configuration", "backup-guard-mutating",
            "--validating-webhook-configuration", "backup-guard-validating",
            "--cert-lifetime", "1h", "--ca-lifetime", "1h", "--cert-sync-interval", "1s",
            "--enable-processor=false", "--leader-election-id", lease]


def point_validator_at(kube, url: str):
    path = kube.webhook_config("validating", "backup-guard-validating")
    obj = kube.ok("GET", path)
    for hook in obj["webhooks"]:
        hook["clientConfig"]["url"] = url + "/v1/webhook/validation"
    kube.ok("PUT", path, body=obj)


class Run:
    """One scenario's outcome."""


def run_scenario(kube, kubeconfig, register_sh, state_dir, load_ns, figures, binary, name, *,
                 replicas: int, fault, step_done, blocked_ok):
    """Starts the servers on an aged Secret, runs admission load, holds `fault` (a function of the
    identities returning a function that lifts it) from before step 1 until HELD_PAST_STEP s after
    `step_done(timeline sample)` first holds (the time-only rotation's step), then lifts it and
    waits for the rotation to finish (one CA everywhere, every replica serving a leaf of it)."""
    work = os.path.join(state_dir, name)
    os.makedirs(work, exist_ok=True)
    secret, lease = f"ops-{name}-tls", f"ops-{name}"
    ids = [Identity(kube, kubeconfig, f"ops-{name}-{x}", secret, work) for x in "ab"[:replicas]]
    kube.request("DELETE", kube.secret(NAMESPACE, secret))
    kube.request("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{secret}-served")
    aged = aged_secret(work, secret)
    kube.ok("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", body=aged)
    old_ca = os.path.join(work, "aged-ca", "ca.crt")
    servers = [BackupGuard(binary, f"{name}-{x}", work,
                           common_args(i, secret, lease)) for x, i in zip("ab", ids)]
    run = Run()
    run.t0 = time.monotonic()
    try:
        a = servers[0]
        register_webhooks(register_sh, kubeconfig, a.url, old_ca)
        a.start()
        a.wait_ready()
        wait_until(f"{a.name} to lead", lambda: a.metrics().sum("backup_guard_leader") == 1, 30)
        for s in servers[1:]:
            s.start()
            s.wait_ready()
            point_validator_at(kube, s.url)
        lift = fault(ids, servers)
        ca_now = pem_certificates(kube.secret_data(NAMESPACE, secret)["ca.crt"])
        assert len(ca_now) == 1, \
            "the CA rotation began before the fault was in place (the servers started too slowly)"
        timeline = Timeline(kube, secret, servers).start()
        api_before = kube.apiserver_metrics()
        load = AdmissionLoad(kube, load_ns, name[:8], threads=2, rate=12).start()
        try:
            t_step = wait_until("the point where a time-only rotation makes the step",
                                lambda: timeline.first_time(step_done), 60, 0.3)
            time.sleep(max(0.0, t_step + HELD_PAST_STEP - time.monotonic()))
            run.blocked = timeline.last()
            run.blocked_ok = blocked_ok(run.blocked)
            run.t_lifted = time.monotonic()
            lift()

            def finished():
                s = timeline.last()
                return (len(s["cas"]) == 1 and all(b == s["cas"] for b in s["bundles"].values())
                        and all(fp == s["leaf"] for fp in s["served"].values()))
            wait_until("the rotation to finish after the fault was lifted", finished, 45, 0.3)
            run.t_finished = time.monotonic()
            time.sleep(AFTER)
        finally:
            load.stop()
            timeline.stop()
            load.cleanup()
        run.health = webhook_health(api_before, kube.apiserver_metrics())
        run.load, run.timeline, run.servers = load, timeline, servers
        run.summary = {
            "load": load.summary(),
            "failed_admission_calls": len(load.failures),
            "webhook_calls_sent_by_apiserver": run.health["requests"],
            "calling_webhook_errors": run.health["bad_rejections"],
            "fresh_handshakes": timeline.handshakes,
            "fresh_handshakes_unverified": len(timeline.unverified),
            "held_until_s": round(run.t_lifted - t_step, 1),
            "finished_after_lift_s": round(run.t_finished - run.t_lifted, 1),
            "state_while_held": {k: v for k, v in run.blocked.items() if k != "t"},
            "server_warnings": {s.name: s.log_problems() for s in servers},
        }
        figures[f"rotation_gate_{name}"] = run.summary
        return run
    finally:
        bad = [f"{s.name} exited with {rc}:\n{s.log_tail(15)}"
               for s, rc in ((s, s.stop()) for s in servers) if rc not in (0, None)]
        for i in ids:
            i.delete()
        kube.request("DELETE", kube.secret(NAMESPACE, secret))
        assert not bad, "\n".join(bad)


def assert_zero_failed_calls(run):
    failures = [f"{f.op} (t+{f.at - run.t0:.1f}s): {f.detail}" for f in run.load.failures[:8]]
    assert not run.load.failures, (
        f"{len(run.load.failures)} failed admission calls during the rotation, first ones:\n"
        + "\n".join(failures) + f"\nfigures: {run.summary}")
    assert not run.timeline.errors, run.timeline.errors[:5]
    assert not run.timeline.unverified, (
        f"{len(run.timeline.unverified)} of {run.timeline.handshakes} fresh handshakes did not "
        f"verify against the webhook's caBundle: {run.timeline.unverified[:3]}")
    assert run.load.total() >= 200, f"too little load to mean anything: {run.load.summary()}"
    assert_healthy(run.health, run.load.expected_denials())


@pytest.fixture(scope="module")
def admin(kube, kubeconfig, register_sh, state_dir, load_namespace, figures, binary):
    return kube, kubeconfig, register_sh, state_dir, load_namespace, figures, binary


class StepSeen:
    """When a time-only rotation would make the step: 3 s (the overlap at a 1 s sync interval)
    after `since(sample)` first held."""

    def __init__(self, since):
        self.since, self.t = since, None

    def __call__(self, s) -> bool:
        if self.t is None and self.since(s):
            self.t = s["t"]
        return self.t is not None and s["t"] - self.t >= 3


def test_ca_rotation_step2_waits_for_both_cabundles_under_load(admin):
    """Suspect 5: the leader cannot write the validating configuration's caBundle. The leaf
    stays with the old CA (which that bundle still trusts) until the write goes through."""
    kube = admin[0]
    old = {}

    def fault(ids, servers):
        old["leaf"] = pem_fingerprint(kube.secret_data(NAMESPACE, "ops-step2-tls")["tls.crt"])
        ids[0].deny("update", "validatingwebhookconfigurations")
        return ids[0].restore

    def blocked_ok(s):  # the old leaf, and the validating bundle with the old CA alone
        return (len(s["cas"]) == 2 and s["leaf"] == old["leaf"]
                and s["bundles"][VALIDATOR_NAME] == s["cas"][1:]
                and s["bundles"][MUTATOR_NAME] == s["cas"])

    run = run_scenario(*admin, "step2", replicas=1, fault=fault,
                       step_done=StepSeen(lambda s: len(s["cas"]) == 2), blocked_ok=blocked_ok)
    assert_zero_failed_calls(run)
    assert run.blocked_ok, (
        "while the validating caBundle held only the old CA, the Secret's leaf should still be "
        f"the old one: {run.summary['state_while_held']}")


def test_ca_rotation_step3_waits_for_every_replica_under_load(admin):
    """Suspect 6: replica B cannot read the Secret and keeps serving the old leaf. The old CA
    stays in both caBundles until B serves a leaf of the new CA."""
    first = {}

    def fault(ids, servers):
        ids[1].deny("get", "secrets")
        return ids[1].restore

    def step2_made(s):  # the Secret's leaf changed while ca.crt holds both CAs
        first.setdefault("leaf", s["leaf"])
        return len(s["cas"]) == 2 and s["leaf"] != first["leaf"]

    def blocked_ok(s):
        return (len(s["cas"]) == 2 and s["served"]["step3-b"] != s["leaf"]
                and all(b == s["cas"] for b in s["bundles"].values()))

    run = run_scenario(*admin, "step3", replicas=2, fault=fault, step_done=StepSeen(step2_made),
                       blocked_ok=blocked_ok)
    assert_zero_failed_calls(run)
    assert run.blocked_ok, (
        "while replica B served the old leaf, both CAs should have stayed in ca.crt and in both "
        f"caBundles: {run.summary['state_while_held']}")
