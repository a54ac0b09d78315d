"""`helm install` into the real control plane, the server run as a local process under the chart's
ServiceAccount, and `helm uninstall` with its pre-delete hook.

Pods cannot run without a kubelet, so the release is installed in url mode (the webhook
configurations call https://localhost:<port>) and the tests run `backup-guard` themselves, with the
arguments of the chart's own Deployment and hook Job, authenticated by a token of the chart's own
ServiceAccounts. The tests of this module run in order on one release.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chart_tools import (
    CHART_DIR, LocalServer, backup_guard_bin, drop_flags, free_port, parse_manifests,
    replace_flag, run, service_account_user, wait_until,
)

RELEASE, NS = "bg", "longhorn-system"
FULLNAME = "bg-backup-guard"
MUTATING, VALIDATING = f"{FULLNAME}-mutating", f"{FULLNAME}-validating"
SERVER_SA = FULLNAME
HOOK_SA = f"{FULLNAME}-uninstall"
GROUP_VERSION = "longhorn.io/v1beta2"
FINALIZER = "longhorn.io"
LONGHORN_KINDS = ["backuptargets", "backupvolumes", "backups", "systembackups",
                  "backupbackingimages", "volumes"]
SELF_MANAGED_FLAGS = {"--cert-secret", "--service-name", "--mutating-webhook-configuration",
                      "--validating-webhook-configuration", "--cert-dns"}
WEBHOOK_KINDS = ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")


@dataclass
class Release:
    port: int
    metrics_port: int
    workdir: Path
    servers: list[LocalServer] = field(default_factory=list)
    cert_dir: Path | None = None


@pytest.fixture(scope="module")
def release(cluster_helm, kubectl, tmp_path_factory):
    state = Release(port=free_port(), metrics_port=free_port(),
                    workdir=tmp_path_factory.mktemp("chart-install"))
    remove_leftovers(kubectl, cluster_helm)
    cluster_helm("install", RELEASE, CHART_DIR, "--namespace", NS, "--create-namespace",
                 "--set", "crds.install=true",
                 "--set", f"webhook.url=https://localhost:{state.port}",
                 "--set", "certificates.extraDnsNames={localhost}",
                 "--set", "webhook.failurePolicy=Fail",
                 "--set", "logLevel=debug")
    yield state
    for server in state.servers:
        server.stop()
    # A failed run leaves nothing behind that could call a dead webhook.
    if cluster_helm("status", RELEASE, "-n", NS, check=False).returncode == 0:
        cluster_helm("uninstall", RELEASE, "-n", NS, "--no-hooks", "--timeout", "60s", check=False)
    for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING)):
        kubectl("delete", kind, name, "--ignore-not-found", check=False)


def remove_leftovers(kubectl, cluster_helm):
    """What an earlier, interrupted run on the same control plane may have left: the release, the
    hook's identity, the engine's objects (finalizers dropped), the Lease and the server's Secret.
    run-chart-tests.sh always starts a fresh plane; this is for runs by hand."""
    if cluster_helm("status", RELEASE, "-n", NS, check=False).returncode == 0:
        cluster_helm("uninstall", RELEASE, "-n", NS, "--no-hooks")
    for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING)):
        kubectl("delete", kind, name, "--ignore-not-found")
    for kind in ("job", "serviceaccount", "role", "rolebinding"):
        kubectl("delete", kind, HOOK_SA, "-n", NS, "--ignore-not-found")
    for kind in ("clusterrole", "clusterrolebinding"):
        kubectl("delete", kind, HOOK_SA, "--ignore-not-found")
    if kubectl.get_or_none("namespace", NS) is None:
        return
    kubectl("delete", "lease", FULLNAME, "-n", NS, "--ignore-not-found")
    kubectl("delete", "secret", f"{FULLNAME}-tls", "-n", NS, "--ignore-not-found")
    for plural in LONGHORN_KINDS + ["settings"]:
        if kubectl.get_or_none("crd", f"{plural}.longhorn.io") is None:
            continue
        for item in kubectl.json("get", f"{plural}.longhorn.io", "-n", NS)["items"]:
            name = item["metadata"]["name"]
            kubectl("patch", f"{plural}.longhorn.io", name, "-n", NS, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
            kubectl("delete", f"{plural}.longhorn.io", name, "-n", NS, "--ignore-not-found",
                    "--wait=false")


def longhorn_object(kind: str, name: str, **fields) -> dict:
    obj = {"apiVersion": GROUP_VERSION, "kind": kind,
           "metadata": {"name": name, "namespace": NS}}
    for key, value in fields.items():
        if key in ("labels", "finalizers", "annotations"):
            obj["metadata"][key] = value
        else:
            obj[key] = value
    return obj


def deployment_args(kubectl) -> list[str]:
    deploy = kubectl.json("get", "deployment", FULLNAME, "-n", NS)
    return deploy["spec"]["template"]["spec"]["containers"][0]["args"]


def start_server(release: Release, kubectl, args: list[str], name: str) -> LocalServer:
    """Runs the Deployment's command line locally: the same flags, but listening on loopback and
    authenticated as the chart's ServiceAccount (a pod would use its mounted token)."""
    kubeconfig = kubectl.token_kubeconfig(SERVER_SA, NS, release.workdir / f"{name}.kubeconfig")
    args = replace_flag(args, "--listen", f"127.0.0.1:{release.port}")
    args = replace_flag(args, "--metrics-listen", f"127.0.0.1:{release.metrics_port}")
    server = LocalServer(backup_guard_bin(), [*args, "--kubeconfig", str(kubeconfig)],
                         release.workdir / f"{name}.log", release.port)
    release.servers.append(server)
    server.start()
    server.wait_ready()
    return server


def file_certificates(release: Release) -> Path:
    if release.cert_dir is None:
        release.cert_dir = release.workdir / "certs"
        run([backup_guard_bin(), "certs", "generate", "--out", release.cert_dir,
             "--dns", "localhost", "--ip", "127.0.0.1"])
    return release.cert_dir


def start_file_mode_server(release: Release, kubectl, name: str) -> LocalServer:
    """The Deployment's args in file mode (as certManager/existingSecret render them), with a
    certificate from `backup-guard certs generate` and its CA patched into both configurations,
    as cainjector or the existingSecret caBundle value would."""
    certs = file_certificates(release)
    set_ca_bundle(kubectl, base64.b64encode((certs / "ca.crt").read_bytes()).decode())
    args = drop_flags(deployment_args(kubectl), SELF_MANAGED_FLAGS)
    args += ["--tls-cert-file", str(certs / "tls.crt"), "--tls-key-file", str(certs / "tls.key")]
    return start_server(release, kubectl, args, name)


def set_ca_bundle(kubectl, ca_bundle: str | None):
    op = ({"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca_bundle}
          if ca_bundle is not None else
          {"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"})
    for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING)):
        current = kubectl.json("get", kind, name)["webhooks"][0]["clientConfig"]
        if ca_bundle is None and "caBundle" not in current:
            continue
        kubectl("patch", kind, name, "--type=json", "-p", json.dumps([op]))


def ca_bundles(kubectl) -> list[str]:
    return [kubectl.json("get", kind, name)["webhooks"][0]["clientConfig"].get("caBundle", "")
            for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING))]


def assert_no_permission_errors(server: LocalServer):
    """The server never hit an RBAC refusal: everything it read or wrote was granted."""
    log = server.log()
    bad = [line for line in log.splitlines() if "forbidden" in line.lower() or "HTTP 403" in line]
    assert not bad, "permission errors in the server log:\n" + "\n".join(bad[:20])


def ensure_default_target(kubectl, url="s3://backups@us-east-1/"):
    kubectl.apply(longhorn_object("BackupTarget", "default", spec={"backupTargetURL": url}))
    # Lookups are cached for up to 1 s (--lookup-cache-ttl); a cached "not found" must expire.
    time.sleep(1.2)


def create_system_backup(kubectl, name: str) -> dict:
    out = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(
        longhorn_object("SystemBackup", name, spec={})))
    return json.loads(out.stdout)


def assert_mutated(system_backup: dict, target_uid: str):
    assert FINALIZER in system_backup["metadata"].get("finalizers", [])
    assert system_backup["spec"]["volumeBackupPolicy"] == "if-not-present"
    owners = system_backup["metadata"].get("ownerReferences", [])
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == \
        [("BackupTarget", "default", target_uid)]


def test_pre_stop_command_is_understood_by_the_binary(helm):
    """The preStop hook runs the image's binary (there is no shell): `sleep <delay>`."""
    objects = parse_manifests(helm.template("--set", "shutdown.preStopDelaySeconds=1",
                                            namespace=NS))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"][
        "exec"]["command"]
    assert command[0] == "/backup-guard"
    started = time.monotonic()
    run([backup_guard_bin(), *command[1:]], timeout=30)
    assert time.monotonic() - started >= 1


# ---- install ---------------------------------------------------------------------------------------

def test_install_creates_crds_rbac_and_webhook_configurations(release, kubectl, cluster_helm):
    assert "deployed" in cluster_helm("status", RELEASE, "-n", NS).stdout
    for plural in LONGHORN_KINDS + ["settings"]:
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                f"crd/{plural}.longhorn.io")
    for kind in ("serviceaccount", "role", "rolebinding", "service", "deployment",
                 "poddisruptionbudget"):
        kubectl("get", kind, FULLNAME, "-n", NS)
    for kind in ("clusterrole", "clusterrolebinding"):
        kubectl("get", kind, FULLNAME)
    mutating = kubectl.json("get", "mutatingwebhookconfiguration", MUTATING)
    validating = kubectl.json("get", "validatingwebhookconfiguration", VALIDATING)
    assert mutating["webhooks"][0]["clientConfig"] == {
        "url": f"https://localhost:{release.port}/v1/webhook/mutation"}
    assert validating["webhooks"][0]["clientConfig"] == {
        "url": f"https://localhost:{release.port}/v1/webhook/validation"}
    # The uninstall hook's identity exists only while the hook runs.
    assert kubectl.get_or_none("serviceaccount", HOOK_SA, "-n", NS) is None


SERVER_USER = service_account_user(SERVER_SA, NS)
# What `serve` calls (charts/backup-guard/templates/rbac.yaml says which code makes each call).
CASCADED_KINDS = ["backupvolumes", "backups", "systembackups", "backupbackingimages"]
SERVER_ALLOWED = (
    [(verb, f"{r}.longhorn.io", NS) for r in LONGHORN_KINDS
     for verb in ("get", "list", "watch", "patch")]
    + [("delete", f"{r}.longhorn.io", NS) for r in CASCADED_KINDS]
    + [(verb, "settings.longhorn.io", NS) for verb in ("get", "list", "watch")]
    + [("create", "leases.coordination.k8s.io", NS),
       ("get", f"leases.coordination.k8s.io/{FULLNAME}", NS),
       ("update", f"leases.coordination.k8s.io/{FULLNAME}", NS),
       ("get", f"leases.coordination.k8s.io/{FULLNAME}-tls-served", NS),
       ("patch", f"leases.coordination.k8s.io/{FULLNAME}-tls-served", NS),
       ("create", "secrets", NS)]
    + [(verb, f"secrets/{FULLNAME}-tls", NS) for verb in ("get", "update")]
    + [(verb, f"mutatingwebhookconfigurations/{MUTATING}", None) for verb in ("get", "update")]
    + [(verb, f"validatingwebhookconfigurations/{VALIDATING}", None) for verb in ("get", "update")]
)
# The grants least privilege removed (issue 16): serve never makes these calls.
SERVER_REMOVED = (
    [("update", f"{r}.longhorn.io", NS) for r in LONGHORN_KINDS]
    + [("delete", "backuptargets.longhorn.io", NS), ("delete", "volumes.longhorn.io", NS),
       ("patch", f"secrets/{FULLNAME}-tls", NS),
       ("patch", f"mutatingwebhookconfigurations/{MUTATING}", None),
       ("patch", f"validatingwebhookconfigurations/{VALIDATING}", None),
       ("get", "customresourcedefinitions.apiextensions.k8s.io", None),
       ("list", "customresourcedefinitions.apiextensions.k8s.io", None)]
)
SERVER_DENIED = [*SERVER_REMOVED,
    ("create", "backups.longhorn.io", NS),
    ("get", "backups.longhorn.io", "default"),
    ("update", "settings.longhorn.io", NS),
    ("delete", "settings.longhorn.io", NS),
    ("get", "secrets", NS),
    ("list", "secrets", NS),
    ("get", "secrets/other", NS),
    ("get", f"secrets/{FULLNAME}-tls", "default"),
    ("get", "secrets", "kube-system"),
    ("delete", f"secrets/{FULLNAME}-tls", NS),
    ("*", "backups.longhorn.io", NS),
    ("*", "*", NS),
    ("*", "*", None),
    ("update", "leases.coordination.k8s.io/other", NS),
    ("patch", "leases.coordination.k8s.io/other", NS),
    ("list", "leases.coordination.k8s.io", NS),
    ("update", f"leases.coordination.k8s.io/{FULLNAME}-tls-served", NS),
    ("delete", f"leases.coordination.k8s.io/{FULLNAME}", NS),
    ("list", "mutatingwebhookconfigurations", None),
    ("patch", "mutatingwebhookconfigurations/other", None),
    ("patch", "validatingwebhookconfigurations/other", None),
    ("patch", f"validatingwebhookconfigurations/{MUTATING}", None),
    ("delete", f"mutatingwebhookconfigurations/{MUTATING}", None),
    ("delete", f"validatingwebhookconfigurations/{VALIDATING}", None),
    ("delete", "namespaces", None),
    ("create", "pods", NS),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", None),
]


def check_permissions(kubectl, user, allowed, denied):
    """kubectl auth can-i for every (verb, resource, namespace); the questions are independent,
    so they are asked a few at a time."""
    questions = [(q, True) for q in allowed] + [(q, False) for q in denied]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda q: kubectl.can_i(*q[0][:2], user, q[0][2]), questions))
    wrong = [f"{v} {r} -n {ns}: expected {'yes' if want else 'no'}"
             for ((v, r, ns), want), got in zip(questions, answers) if got != want]
    assert not wrong, f"kubectl auth can-i --as {user}:\n" + "\n".join(wrong)


def test_server_service_account_has_exactly_the_permissions_it_needs(release, kubectl):
    check_permissions(kubectl, SERVER_USER, SERVER_ALLOWED, SERVER_DENIED)


def test_server_service_account_has_none_of_the_grants_serve_does_not_use(release, kubectl):
    """update on the longhorn.io kinds, delete on BackupTargets and Volumes, patch on the Secret
    and the webhook configurations, reading CRDs: `serve` makes none of these calls (the e2e
    processor suite runs under these rules, BG_E2E_SERVER_IDENTITY=chart)."""
    check_permissions(kubectl, SERVER_USER, [], SERVER_REMOVED)


# ---- the server under the chart's identity ---------------------------------------------------------

def test_server_with_file_certificates_admits_through_the_api_server_and_releases(release,
                                                                                 kubectl):
    with start_file_mode_server(release, kubectl, "file-mode") as server:
        check_admission_and_processor(kubectl)
    assert_no_permission_errors(server)


def check_admission_and_processor(kubectl):
    ensure_default_target(kubectl)
    target = kubectl.json("get", "backuptarget", "default", "-n", NS)

    # Mutation through the API server, with a lookup of the default BackupTarget by the server.
    assert_mutated(create_system_backup(kubectl, "sb-file-mode"), target["metadata"]["uid"])

    # Validation: a Backup without its backup-volume label is refused, naming the label.
    proc = kubectl("create", "-f", "-", check=False, input=json.dumps(
        longhorn_object("Backup", "no-label", spec={"snapshotName": "s"})))
    assert proc.returncode != 0 and "backup-volume" in proc.stderr, proc.stderr

    # The lookups of a Backup DELETE (its BackupTarget by name, its BackupVolume by labels): with
    # both there, no "only the custom resource" warning, so both lookups found them.
    kubectl.apply(longhorn_object("BackupVolume", "bv-vol2", labels={
        "backup-target": "default", "backup-volume": "vol2"}, spec={}))
    kubectl("create", "-f", "-", input=json.dumps(longhorn_object(
        "Backup", "with-parents", labels={"backup-volume": "vol2", "backup-target": "default"},
        spec={"snapshotName": "s"})))
    kubectl("patch", "backup", "with-parents", "-n", NS, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"backupTargetName": "default", "state": "Completed"}}))
    proc = kubectl("delete", "backup", "with-parents", "-n", NS, "--wait=false")
    assert "only the custom resource" not in proc.stderr, proc.stderr
    kubectl("delete", "backupvolume", "bv-vol2", "-n", NS, "--wait=false")

    # The confirmation flag lookup of a BackupTarget DELETE: refused without the flag.
    proc = kubectl("delete", "backuptarget", "default", "-n", NS, "--dry-run=server", check=False)
    assert proc.returncode != 0 and "deleting-confirmation-flag" in proc.stderr, proc.stderr

    # The finalizer processor (leader through the chart's Lease) releases a failed Backup.
    kubectl("create", "-f", "-", input=json.dumps(longhorn_object(
        "Backup", "failed-backup", labels={"backup-volume": "vol1"}, finalizers=[FINALIZER],
        spec={"snapshotName": "s"})))
    kubectl("delete", "backup", "failed-backup", "-n", NS, "--wait=false")
    wait_until(lambda: kubectl.get_or_none("backup", "failed-backup", "-n", NS) is None, 30,
               "the processor to release the failed Backup's finalizer")
    lease = kubectl.json("get", "lease", FULLNAME, "-n", NS)
    assert lease["spec"].get("holderIdentity"), lease


def test_helm_upgrade_keeps_the_ca_bundle_it_does_not_own(release, kubectl, cluster_helm):
    before = ca_bundles(kubectl)
    assert all(before)
    cluster_helm("upgrade", RELEASE, CHART_DIR, "-n", NS, "--reuse-values",
                 "--set", "webhook.timeoutSeconds=9")
    assert ca_bundles(kubectl) == before
    for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING)):
        assert kubectl.json("get", kind, name)["webhooks"][0]["timeoutSeconds"] == 9


def test_server_manages_its_own_certificate_with_the_chart_args(release, kubectl):
    """selfManaged mode exactly as the Deployment runs it: the server creates Secret
    <fullname>-tls, patches caBundle into both configurations, and the API server then calls it."""
    set_ca_bundle(kubectl, None)
    args = deployment_args(kubectl)
    assert "--cert-secret" in args
    with start_server(release, kubectl, args, "self-managed") as server:
        secret = wait_until(lambda: kubectl.get_or_none("secret", f"{FULLNAME}-tls", "-n", NS),
                            30, f"Secret {FULLNAME}-tls")
        assert {"ca.crt", "tls.crt", "tls.key"} <= set(secret["data"])
        assert_ca_bundles_trust(kubectl, secret)
        assert_mutated(create_system_backup(kubectl, "sb-self-managed"), default_target_uid(kubectl))
        # The replica publishes the certificate it serves, under the chart's RBAC.
        served = wait_until(
            lambda: (kubectl.get_or_none("lease", f"{FULLNAME}-tls-served", "-n", NS) or {})
            .get("metadata", {}).get("annotations"), 30, f"Lease {FULLNAME}-tls-served")
        assert any(k.startswith("served.backup-guard.longhorn.io/") for k in served), served
    assert_no_permission_errors(server)


def test_self_managed_server_restores_the_ca_bundle_of_recreated_configurations(release,
                                                                                kubectl):
    """A reinstall recreates the webhook configurations without caBundle while the server's
    Secret (which helm does not own) survives: the server must publish its CA again."""
    secret = kubectl.json("get", "secret", f"{FULLNAME}-tls", "-n", NS)
    set_ca_bundle(kubectl, None)
    with start_server(release, kubectl, deployment_args(kubectl), "self-managed-again") as server:
        assert_ca_bundles_trust(kubectl, secret)
        assert_mutated(create_system_backup(kubectl, "sb-self-managed-again"),
                       default_target_uid(kubectl))
    assert_no_permission_errors(server)


def assert_ca_bundles_trust(kubectl, secret: dict):
    ca_pem = base64.b64decode(secret["data"]["ca.crt"]).decode().strip()
    # The processor's leader publishes the CA; a Lease left by an earlier server may first have to
    # expire (15 s).
    bundles = wait_until(lambda: all(ca_bundles(kubectl)) and ca_bundles(kubectl), 40,
                         "caBundle in both webhook configurations")
    for bundle in bundles:
        assert ca_pem in base64.b64decode(bundle).decode()


def default_target_uid(kubectl) -> str:
    ensure_default_target(kubectl)
    return kubectl.json("get", "backuptarget", "default", "-n", NS)["metadata"]["uid"]


# ---- uninstall -------------------------------------------------------------------------------------

EXPECTED_HOOK_ARGS = ["uninstall", "--namespace", NS, "--skip-unless-confirmed",
                      "--remove-webhook-configurations", f"{MUTATING},{VALIDATING}",
                      "--receipt", "/receipt/receipt.json"]


def test_release_registers_the_pre_delete_hook(release, cluster_helm):
    hooks = parse_manifests(cluster_helm("get", "hooks", RELEASE, "-n", NS).stdout)
    job = [h for h in hooks if h["kind"] == "Job"]
    assert len(job) == 1
    assert job[0]["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    pod = job[0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == HOOK_SA
    assert pod["containers"][0]["args"] == EXPECTED_HOOK_ARGS
    assert sorted(h["kind"] for h in hooks if h["metadata"]["name"] == HOOK_SA) == sorted([
        "ClusterRole", "ClusterRoleBinding", "Job", "Role", "RoleBinding", "ServiceAccount"])


HOOK_USER = service_account_user(HOOK_SA, NS)
HOOK_ALLOWED = (
    # (kubectl cannot ask about kinds whose CRDs are not installed, such as engines: the render
    # tests check uninstallHook.extraResources.)
    [(verb, f"{r}.longhorn.io", NS) for r in LONGHORN_KINDS
     for verb in ("get", "list", "patch", "delete")]
    + [("get", "settings.longhorn.io/deleting-confirmation-flag", NS)]
    + [(verb, "customresourcedefinitions.apiextensions.k8s.io", None) for verb in ("get", "list")]
    + [("delete", f"{kind}s/{name}", None) for kind in WEBHOOK_KINDS
       for name in (MUTATING, VALIDATING)]
)
HOOK_DENIED = [
    ("create", "backups.longhorn.io", NS),
    ("delete", "backups.longhorn.io", "default"),
    ("delete", "settings.longhorn.io", NS),
    ("patch", "settings.longhorn.io", NS),
    ("get", "secrets", NS),
    ("*", "*", None),
    ("*", "backups.longhorn.io", NS),
    ("delete", "mutatingwebhookconfigurations/other", None),
    ("delete", "validatingwebhookconfigurations", None),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("delete", "namespaces", None),
]


def object_counts(kubectl) -> dict[str, int]:
    return {plural: len(kubectl.json("get", f"{plural}.longhorn.io", "-n", NS)["items"])
            for plural in LONGHORN_KINDS}


def webhook_configurations_present(kubectl) -> list[str]:
    return [name for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING))
            if kubectl.get_or_none(kind, name) is not None]


def saved_webhook_configurations(kubectl) -> list[dict]:
    saved = []
    for kind, name in zip(WEBHOOK_KINDS, (MUTATING, VALIDATING)):
        obj = kubectl.json("get", kind, name)
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
            obj["metadata"].pop(key, None)
        saved.append(obj)
    return saved


def complete_job(kubectl, name: str):
    """Marks the hook Job succeeded, as the Job controller would once its pod exited 0."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {"status": "True", "lastTransitionTime": now, "lastProbeTime": now}
    status = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", **condition}, {"type": "Complete", **condition}]}
    kubectl("patch", "job", name, "-n", NS, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


def run_hook(kubectl, job: dict, kubeconfig: Path) -> subprocess.CompletedProcess:
    """The hook Job's container, run locally: the image's entrypoint is the binary."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container, "the image's ENTRYPOINT (/backup-guard) runs the args"
    # The container's volumes (the receipt's emptyDir) become local folders; an argument under a
    # path that no volume mounts would fail in the pod (read-only root filesystem), and here.
    args = list(container["args"])
    for mount in container.get("volumeMounts", []):
        path = mount["mountPath"].rstrip("/")
        local = kubeconfig.parent / "hook-volumes" / path.strip("/")
        local.mkdir(parents=True, exist_ok=True)
        args = [str(local) + a[len(path):] if a.startswith(path + "/") else a for a in args]
    return run([backup_guard_bin(), *args, "--kubeconfig", kubeconfig], check=False, timeout=300)


def test_helm_uninstall_runs_the_pre_delete_hook(release, kubectl, cluster_helm):
    with start_file_mode_server(release, kubectl, "during-uninstall") as server:
        uninstall_with_the_hook(release, kubectl, cluster_helm)
    assert_no_permission_errors(server)

    # The release is gone, the hook's identity too; the CRDs stay (helm.sh/resource-policy: keep).
    assert RELEASE not in cluster_helm("list", "-n", NS, "-q").stdout.split()
    for kind in ("deployment", "service", "serviceaccount", "role", "rolebinding"):
        assert kubectl.get_or_none(kind, FULLNAME, "-n", NS) is None, kind
    for kind in ("serviceaccount", "role", "rolebinding", "job"):
        assert kubectl.get_or_none(kind, HOOK_SA, "-n", NS) is None, kind
    for kind in ("clusterrole", "clusterrolebinding"):
        assert kubectl.get_or_none(kind, FULLNAME) is None, kind
        assert kubectl.get_or_none(kind, HOOK_SA) is None, kind
    for plural in LONGHORN_KINDS:
        kubectl("get", "crd", f"{plural}.longhorn.io")


def uninstall_with_the_hook(release: Release, kubectl, cluster_helm):
    # The storage engine's objects, as an uninstall meets them.
    ensure_default_target(kubectl)
    kubectl.apply([
        longhorn_object("Setting", "deleting-confirmation-flag", value="false"),
        longhorn_object("Volume", "vol1", spec={"Standby": True, "backupTargetName": "default"}),
        longhorn_object("BackupVolume", "bv1", labels={"backup-target": "default",
                                                       "backup-volume": "vol1"},
                        spec={"backupTargetName": "default", "volumeName": "vol1"}),
        longhorn_object("Backup", "done", labels={"backup-target": "default",
                                                  "backup-volume": "vol1"},
                        finalizers=[FINALIZER], spec={"snapshotName": "s1"}),
        longhorn_object("Backup", "failed", labels={"backup-volume": "vol1"},
                        finalizers=[FINALIZER], spec={"snapshotName": "s2"}),
        longhorn_object("BackupBackingImage", "bbi1", labels={"backup-target": "default",
                                                              "backing-image": "img"},
                        finalizers=[FINALIZER],
                        spec={"backingImage": "img", "backupTargetName": "default",
                              "userCreated": True}),
    ])
    kubectl("patch", "backup", "done", "-n", NS, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"state": "Completed", "backupTargetName": "default",
                                   "volumeName": "vol1"}}))
    create_system_backup(kubectl, "sb-before-uninstall")
    before = object_counts(kubectl)
    assert all(before.values()), before
    saved_webhooks = saved_webhook_configurations(kubectl)

    uninstall = subprocess.Popen(
        [cluster_helm.path, "uninstall", RELEASE, "-n", NS, "--timeout", "4m",
         "--kubeconfig", cluster_helm.kubeconfig],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job = wait_until(lambda: kubectl.get_or_none("job", HOOK_SA, "-n", NS), 60,
                         "helm to create the pre-delete hook Job")
        assert job["spec"]["template"]["spec"]["containers"][0]["args"] == EXPECTED_HOOK_ARGS
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == HOOK_SA
        check_permissions(kubectl, HOOK_USER, HOOK_ALLOWED, HOOK_DENIED)
        kubeconfig = kubectl.token_kubeconfig(HOOK_SA, NS, release.workdir / "hook.kubeconfig")

        # Not confirmed: the engine's objects stay, the webhook configurations go.
        proc = run_hook(kubectl, job, kubeconfig)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "deleting-confirmation-flag" in proc.stdout, proc.stdout
        assert object_counts(kubectl) == before
        assert webhook_configurations_present(kubectl) == []

        # Confirmed, with the server and its webhooks in place as during a real uninstall.
        for obj in saved_webhooks:
            kubectl("create", "-f", "-", input=json.dumps(obj))
        kubectl("patch", "setting", "deleting-confirmation-flag", "-n", NS, "--type=merge",
                "-p", '{"value": "true"}')
        proc = run_hook(kubectl, job, kubeconfig)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert object_counts(kubectl) == {plural: 0 for plural in LONGHORN_KINDS}
        assert webhook_configurations_present(kubectl) == []
        assert kubectl.get_or_none("setting", "deleting-confirmation-flag", "-n", NS)

        complete_job(kubectl, HOOK_SA)
        out, _ = uninstall.communicate(timeout=120)
        assert uninstall.returncode == 0, out
    finally:
        if uninstall.poll() is None:
            uninstall.kill()
            uninstall.wait()
