"""`backup-guard diagnose` against the real control plane and the engine's own CRDs: each stuck
case is made for real, and diagnose must name it, with the reason the release rules give.

The cluster-wide cases (webhook configurations, a CRD's stored versions) are narrow on purpose: the
dead webhooks match only longhorn.io `engines` in namespaces labelled `bg-diagnose=dead` (none is),
so the other tests never call them, and everything is restored afterwards.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from bg_e2e import backup_guard_bin, free_port, generate_certs
from processor_support import (  # noqa: F401 - fixtures
    Ns, backup_obj, backup_volume_obj, cleanup_namespace, log, obj, poll, system_backup_obj,
    target_obj, volume_obj,
)

DEAD = "bg-diagnose-dead"
WRONG_CA = "bg-diagnose-wrong-ca"
NO_ENDPOINT = "bg-diagnose-no-endpoint"
STORED_CRD = "engines.longhorn.io"
SECRET_VALUE = "sup3r-s3cret-backupstore-key"


def diagnose(kubeconfig, ns: str, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [str(backup_guard_bin()), "diagnose", "--kubeconfig", str(kubeconfig), "--namespace", ns,
           *map(str, args)]
    log("running " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    log(f"diagnose exited {proc.returncode}; stderr: {proc.stderr.strip()}")
    return proc


def report_of(proc: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"diagnose -o json printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n"
                    f"{proc.stderr}")


def problems(report: dict, category: str) -> list[dict]:
    return [p for p in report["problems"] if p["category"] == category]


def narrow_rules() -> dict:
    return {
        "rules": [{"apiGroups": ["longhorn.io"], "apiVersions": ["v1beta2"],
                   "resources": ["engines"], "operations": ["CREATE"]}],
        "namespaceSelector": {"matchLabels": {"bg-diagnose": "dead"}},
        "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
        "failurePolicy": "Fail",
    }


def webhook_configuration(name: str, client_config: dict) -> dict:
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
            "webhooks": [{"name": f"{name}.example.com", "clientConfig": client_config,
                          **narrow_rules()}]}


class Stuck:
    """What the `stuck` fixture made."""

    def __init__(self, ns: str, report: dict, table: str, rc: int, table_rc: int, bundle: Path,
                 token: str):
        self.ns = ns
        self.report = report
        self.table = table
        self.rc = rc
        self.table_rc = table_rc
        self.bundle = bundle
        self.token = token

    def deleting(self, kind: str, name: str) -> dict:
        for e in self.report["deleting"]:
            if e["kind"] == kind and e["name"] == name:
                return e
        pytest.fail(f"diagnose does not list {kind} {name} as being deleted:\n"
                    f"{json.dumps(self.report['deleting'], indent=1)}")


def test_diagnose_on_a_clean_namespace_exits_zero(backup_guard, kubeconfig):
    """Nothing deleting, healthy webhooks (the session server's, with their CA), CRDs as the
    engine installs them: exit 0, and backup-guard's own state read from its /metrics."""
    proc = diagnose(kubeconfig, "bg-diagnose-empty", "-o", "json",
                    "--metrics-url", f"{backup_guard.metrics_url}/metrics")
    report = report_of(proc)
    assert proc.returncode == 0, json.dumps(report["problems"], indent=1)
    assert report["deleting"] == []
    ours = [w for w in report["webhooks"] if w["configuration"].startswith("backup-guard-")]
    assert ours, report["webhooks"]
    for w in ours:
        assert w["endpoint"]["tls"]["handshake"] and w["endpoint"]["tls"]["caBundleVerifies"], w
    state = report["backupGuard"]
    assert "leader" in state and state["lastApiContactSecondsAgo"] < 60, state
    assert report["engine"]["running"] is False


def test_diagnose_cluster_unreadable_exits_two(kubeconfig, tmp_path):
    text = Path(kubeconfig).read_text()
    lines = [f"    server: https://127.0.0.1:{free_port()}" if l.strip().startswith("server:")
             else l for l in text.splitlines()]
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text("\n".join(lines) + "\n")
    proc = diagnose(dead, "longhorn-system")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "could not be read" in proc.stderr


@pytest.fixture(scope="module")
def stuck(backup_guard, kubeconfig, api_client, custom_objects, core_v1, tmp_path_factory):
    """One namespace with every stuck case, the cluster-wide ones beside it; diagnose run once as
    JSON with a bundle and once as a table. Everything is undone afterwards."""
    ns = f"bg-diagnose-{int(time.time() * 1000) % 100000}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    adm = client.AdmissionregistrationV1Api(api_client)
    ext = client.ApiextensionsV1Api(api_client)
    tmp = tmp_path_factory.mktemp("diagnose")
    stored_patched = False
    try:
        lh = Ns(custom_objects, ns, kubeconfig)
        lh.set_flag("false")
        # A Secret the bundle must never show, named by the target, and a service account token.
        core_v1.create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name="bt-credentials"),
            string_data={"AWS_SECRET_ACCESS_KEY": SECRET_VALUE}))
        core_v1.create_namespaced_service_account(ns, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="diag")))
        core_v1.create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name="diag-token",
                                         annotations={"kubernetes.io/service-account.name": "diag"}),
            type="kubernetes.io/service-account-token"))
        token = poll(lambda: (core_v1.read_namespaced_secret("diag-token", ns).data or {})
                     .get("token"), timeout=30, message="the service account token")
        token = base64.b64decode(token).decode()

        default = target_obj("default")
        default["spec"]["credentialSecret"] = "bt-credentials"
        lost = volume_obj("vol-lost", standby=False)
        lost["spec"]["backupTargetName"] = "no-such-target"
        lh.apply(
            default, target_obj("offline", available=False),
            backup_volume_obj("vol-1"),
            backup_obj("backup-held", "vol-1", "default", "Completed"),
            system_backup_obj("sb-held"),
            backup_volume_obj("vol-2", target="offline"),
            *[backup_obj(f"backup-v2-{i}", "vol-2", "offline", "Completed") for i in range(3)],
            # duplicated and empty-named BackupVolumes (engine issues #11152, #11154)
            obj("BackupVolume", "bv-dup-a", labels={"backup-target": "default",
                                                     "backup-volume": "vol-dup"},
                spec={"backupTargetName": "default", "volumeName": "vol-dup"}),
            obj("BackupVolume", "bv-dup-b", labels={"backup-target": "default",
                                                     "backup-volume": "vol-dup"},
                spec={"backupTargetName": "default", "volumeName": "vol-dup"}),
            obj("BackupVolume", "bv-noname", labels={"backup-target": "default"},
                spec={"backupTargetName": "default", "volumeName": ""}),
            lost,
        )
        # Held by each rule: a Backup and a SystemBackup left to the engine (their target is
        # available), a BackupVolume whose Backups remain (its target is not available).
        for kind, name in (("Backup", "backup-held"), ("SystemBackup", "sb-held"),
                           ("BackupVolume", "bv-vol-2")):
            lh.delete(kind, name)

        # A dead webhook (a closed port, failurePolicy Fail), one whose caBundle is another CA's,
        # one whose Service has no endpoint.
        other_ca = generate_certs(tmp / "other-ca") / "ca.crt"
        adm.create_validating_webhook_configuration(webhook_configuration(
            DEAD, {"url": f"https://127.0.0.1:{free_port()}/validate"}))
        adm.create_validating_webhook_configuration(webhook_configuration(
            WRONG_CA, {"url": f"{backup_guard.url}/v1/webhook/validation",
                       "caBundle": base64.b64encode(other_ca.read_bytes()).decode()}))
        core_v1.create_namespaced_service(ns, client.V1Service(
            metadata=client.V1ObjectMeta(name="nowhere"),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=443, target_port=9443)])))
        adm.create_validating_webhook_configuration(webhook_configuration(
            NO_ENDPOINT, {"service": {"namespace": ns, "name": "nowhere", "path": "/v"}}))

        # A stored version no longer served: status.storedVersions, written through the CRD's status
        # subresource, names a version spec.versions does not have (kube-apiserver 1.34 accepts
        # it), as an engine upgrade that dropped a version leaves it.
        versions = [v.name for v in ext.read_custom_resource_definition(STORED_CRD).spec.versions]
        assert "v1alpha1" not in versions, versions
        ext.patch_custom_resource_definition_status(
            STORED_CRD, {"status": {"storedVersions": ["v1alpha1", "v1beta2"]}})
        stored_patched = True
        assert ext.read_custom_resource_definition(STORED_CRD).status.stored_versions == \
            ["v1alpha1", "v1beta2"]

        bundle = tmp / "bundle.tar.gz"
        proc = diagnose(kubeconfig, ns, "-o", "json", "--bundle", bundle)
        table = diagnose(kubeconfig, ns)
        log("table:\n" + table.stdout)
        yield Stuck(ns, report_of(proc), table.stdout, proc.returncode, table.returncode, bundle,
                    token)
    finally:
        for name in (DEAD, WRONG_CA, NO_ENDPOINT):
            try:
                adm.delete_validating_webhook_configuration(name)
            except ApiException as e:
                if e.status != 404:
                    raise
        if stored_patched:
            ext.patch_custom_resource_definition_status(
                STORED_CRD, {"status": {"storedVersions": ["v1beta2"]}})
        cleanup_namespace(custom_objects, core_v1, ns)


def test_diagnose_exits_one_when_something_is_stuck(stuck):
    assert stuck.rc == 1, stuck.report["problems"]
    assert stuck.table_rc == 1
    assert stuck.report["stuck"] is True


def test_diagnose_backup_left_to_the_engine(stuck):
    e = stuck.deleting("Backup", "backup-held")
    assert e["verdict"] == "held"
    assert e["finalizers"] == ["longhorn.io"]
    assert e["state"] == "Completed"
    assert e["labels"] == {"backup-target": "default", "backup-volume": "vol-1"}
    assert ('waiting for the engine: its BackupTarget "default" is available and it has data in '
            "the store") in e["why"]
    assert ('the engine is not running: no ready pod of its manager DaemonSet "longhorn-manager"'
            in e["why"])
    assert "longhorn.io/delete-custom-resource-only=true" in e["fix"]
    assert "Backup backup-held" in stuck.table


def test_diagnose_system_backup_left_to_the_engine(stuck):
    e = stuck.deleting("SystemBackup", "sb-held")
    assert e["verdict"] == "held"
    assert [r["name"] for r in e["ownerReferences"]] == ["default"]  # added by backup-guard
    assert "waiting for the engine" in e["why"] and "not running" in e["why"]


def test_diagnose_backup_volume_with_backups_remaining(stuck):
    e = stuck.deleting("BackupVolume", "bv-vol-2")
    assert e["why"] == '3 Backups of volume "vol-2" remain'
    assert e["childrenRemaining"] == 3
    assert "-l backup-volume=vol-2" in e["fix"]
    assert e["deletingSeconds"] >= 0


def test_diagnose_dead_webhook(stuck):
    [p] = [p for p in problems(stuck.report, "webhook-stale") if DEAD in p["object"]]
    assert "failurePolicy Fail" in p["object"]
    assert "its URL does not answer" in p["detail"] and "Connection refused" in p["detail"]
    assert f"kubectl delete validatingwebhookconfiguration {DEAD}" in p["fix"]
    [p] = [p for p in problems(stuck.report, "webhook-stale") if NO_ENDPOINT in p["object"]]
    assert "has no ready endpoint" in p["detail"]
    assert "Webhook configurations whose endpoint does not answer" in stuck.table


def test_diagnose_ca_bundle_that_does_not_verify(stuck):
    [p] = [p for p in problems(stuck.report, "webhook-ca") if WRONG_CA in p["object"]]
    assert "caBundle does not verify the certificate served at 127.0.0.1:" in p["detail"]
    [w] = [w for w in stuck.report["webhooks"] if w["configuration"] == WRONG_CA]
    assert w["endpoint"]["tls"]["handshake"] is True
    assert w["endpoint"]["tls"]["caBundleVerifies"] is False


def test_diagnose_stored_version_no_longer_served(stuck):
    [p] = problems(stuck.report, "stored-version")
    assert p["object"] == f"CustomResourceDefinition {STORED_CRD}"
    assert '["v1alpha1"]' in p["detail"]
    assert f"kubectl patch crd {STORED_CRD} --subresource=status" in p["fix"]
    [crd] = [c for c in stuck.report["crds"] if c["name"] == STORED_CRD]
    assert crd["notServed"] == ["v1alpha1"]


def test_diagnose_duplicate_and_empty_backup_volumes(stuck):
    [dup] = problems(stuck.report, "backupvolume-duplicate")
    assert '"bv-dup-a"' in dup["object"] and '"bv-dup-b"' in dup["object"]
    assert "delete-custom-resource-only=true && kubectl delete backupvolumes.longhorn.io" in \
        dup["fix"]
    empty = [p["object"] for p in problems(stuck.report, "backupvolume-empty-name")]
    assert empty == ["BackupVolume bv-noname"], empty


def test_diagnose_volume_with_a_missing_target(stuck):
    [p] = problems(stuck.report, "volume-target-missing")
    assert p["object"] == "Volume vol-lost"
    assert '"no-such-target", which does not exist' in p["detail"]


def test_diagnose_reports_the_confirmation_flag(stuck):
    flag = stuck.report["confirmationFlag"]
    assert flag == {"name": "deleting-confirmation-flag", "found": True, "value": "false",
                    "parsesAsBool": True, "parsesAsTrue": False}


def test_diagnose_bundle_never_holds_secret_data_or_a_token(stuck, kubeconfig):
    with tarfile.open(stuck.bundle, "r:gz") as tar:
        names = tar.getnames()
        contents = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert "diagnose.json" in names and "crds.json" in names
    assert "webhookconfigurations.json" in names
    assert "objects/backups.json" in names
    backups = json.loads(contents["objects/backups.json"])
    assert "backup-held" in [b["metadata"]["name"] for b in backups]
    assert all("spec" not in b or set(b["spec"]) <= {"backupTargetName", "volumeName"}
               for b in backups)
    kubeconfig_text = Path(kubeconfig).read_text()
    key_data = [l.split(":", 1)[1].strip() for l in kubeconfig_text.splitlines()
                if "client-key-data" in l]
    forbidden = [SECRET_VALUE, base64.b64encode(SECRET_VALUE.encode()).decode(), stuck.token,
                 "PRIVATE KEY", *key_data]
    for name, text in contents.items():
        for f in forbidden:
            assert f not in text, f"{name} holds a secret ({f[:12]}...)"
        assert "bt-credentials" not in text, name
