"""`backup-guard uninstall` cannot get stuck on what it can see (docs/CONTRACT.md "Uninstall", issue 12),
against the real API server:

- a dead validating webhook (URL on a closed port, failurePolicy Fail) matching Backup DELETE holds
  the uninstall, which keeps going, names the webhook, and completes once the configuration goes;
- a Volume created after the Volumes step is deleted before success is reported (final sweep);
- the RBAC pre-flight: under the chart's own pre-delete hook RBAC (every kind of the engine's CRDs
  that this plane serves) it passes; with one kind missing from the Role it exits 2 naming every
  missing permission, and nothing is changed.

Each test works in a namespace of its own; no processor runs there, so the uninstall applies the
release rules alone.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from bg_e2e import E2E_DIR, FINALIZER
from processor_support import (  # noqa: F401 - fixtures
    DELETE_TARGET_ANNOTATION, UNINSTALL_KINDS, backup_obj, brief, found_lines, log, ns_lh, obj,
    poll, populate, proc_ns, run_uninstall, uninstaller, volume_obj,
)

HOLD_FINALIZER = "e2e.backup-guard.test/hold"
ROOT = E2E_DIR.parent.parent


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_webhook_configuration(name: str, ns: str) -> dict:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "dead.backup-guard.test",
            "clientConfig": {"url": f"https://127.0.0.1:{closed_port()}/validate"},
            "rules": [{"apiGroups": ["longhorn.io"], "apiVersions": ["*"],
                       "operations": ["DELETE"], "resources": ["backups"],
                       "scope": "Namespaced"}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 2,
            # This test's namespace only: the rest of the session is not held.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        }],
    }


def test_a_dead_webhook_is_named_and_the_uninstall_completes_once_it_goes(
        api_client, backup_guard, kubeconfig, ns_lh, uninstaller):
    lh = ns_lh
    ns = lh.namespace
    populate(lh, webhook=True, backups=6)
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"bg-e2e-dead-{ns}"[:63]
    admission.create_validating_webhook_configuration(dead_webhook_configuration(name, ns))
    try:
        # The API server refuses Backup deletions in this namespace from now on.
        def refused():
            victim = lh.list("Backup")[0]["metadata"]["name"]
            try:
                lh.delete("Backup", victim)
            except client.rest.ApiException as e:
                return e.status >= 500 and "dead.backup-guard.test" in (e.body or "")
            lh.remove_finalizers("Backup", victim)  # went through: not registered yet
            return False
        poll(refused, timeout=30, interval=0.5, message="the dead webhook to be called")
        lh.set_flag("true")
        proc = uninstaller(ns, "--force", "--timeout", "120s")
        poll(lambda: "admission webhook \"dead.backup-guard.test\" could not be called"
             in proc.stderr(), timeout=60,
             message=lambda: f"the uninstall to name the dead webhook; stderr:\n{proc.stderr()}"
                             f"\nstdout:\n{proc.stdout()}")
        time.sleep(3)  # a few more passes: it keeps going, it does not exit
        assert proc.running(), f"the uninstall gave up on a failed write:\n{proc.stderr()}"
        assert lh.counts()["Backup"] > 0, "the Backups went although the webhook refuses"
        log(f"held by the dead webhook: {lh.counts()}")
    finally:
        admission.delete_validating_webhook_configuration(name)
    rc = proc.wait(120)
    assert rc == 0, f"exit {rc}\nstdout:\n{proc.stdout()}\nstderr:\n{proc.stderr()}\n" \
        f"left: {lh.leftovers()}"
    assert not lh.leftovers(), lh.leftovers()
    assert "final sweep: nothing left of" in proc.stdout(), proc.stdout()


def test_a_volume_created_after_its_step_is_deleted_before_success(backup_guard, kubeconfig,
                                                                      ns_lh, uninstaller):
    """A Backup held by a foreign finalizer keeps the run in the BackupTarget step (the target
    waits for its children); a Volume created then, long after the Volumes step, is found by the
    final sweep and deleted before the uninstall reports success."""
    lh = ns_lh
    ns = lh.namespace
    populate(lh, webhook=True, backups=4)
    lh.apply(backup_obj("held", "vol-1", "default", "Completed"))
    lh.patch("Backup", "held", {"metadata": {"finalizers": [FINALIZER, HOLD_FINALIZER]}})
    lh.set_flag("true")
    proc = uninstaller(ns, "--force", "--timeout", "120s")
    proc.wait_line(r"found 0 Volume remaining", timeout=60)
    poll(lambda: (lh.get_or_none("Backup", "held") or {}).get("metadata", {})
         .get("deletionTimestamp"), timeout=60, message="the held Backup to be deleted")
    assert proc.running(), proc.stdout()
    lh.apply(volume_obj("late-volume", standby=False))
    log(f"created Volume late-volume while the run waits: {lh.counts()}")
    lh.patch("Backup", "held", {"metadata": {"finalizers": [
        f for f in lh.get("Backup", "held")["metadata"]["finalizers"] if f != HOLD_FINALIZER]}})
    rc = proc.wait(120)
    out = proc.stdout()
    assert rc == 0, f"exit {rc}\nstdout:\n{out}\nstderr:\n{proc.stderr()}\nleft: {lh.leftovers()}"
    assert lh.get_or_none("Volume", "late-volume") is None, \
        f"the uninstall reported success with the late Volume left:\n{out}"
    assert "final sweep: found 1 Volume; going through the steps again" in out, out
    assert not lh.leftovers(), lh.leftovers()


# ---- RBAC pre-flight under the chart's own hook RBAC ----------------------------------------------

def hook_rbac(ns: str, drop_kind: str | None = None) -> list[dict]:
    """The chart's pre-delete hook ServiceAccount, Role, RoleBinding, ClusterRole and
    ClusterRoleBinding for a release in `ns`, renamed per test (the cluster-scoped ones are shared
    by the session); `drop_kind` leaves that kind out of the Role."""
    helm = subprocess.run([str(E2E_DIR / "build-tools.sh"), "--print-path", "helm"],
                          capture_output=True, text=True, check=True).stdout.strip()
    text = subprocess.run([helm, "template", "e2e-hook", str(ROOT / "charts" / "backup-guard"),
                           "--namespace", ns, "--show-only", "templates/uninstall-hook.yaml"],
                          capture_output=True, text=True, check=True).stdout
    objects = [o for o in yaml.safe_load_all(text) if o and o["kind"] != "Job"]
    sa = "e2e-hook-backup-guard-uninstall"
    for o in objects:
        o["metadata"].pop("annotations", None)  # helm hook annotations mean nothing here
        if o["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            o["metadata"]["name"] = f"{ns}-hook"[:63]
        if o["kind"] == "ClusterRoleBinding":
            o["roleRef"]["name"] = f"{ns}-hook"[:63]
        if o["kind"] == "Role" and drop_kind:
            for rule in o["rules"]:
                if drop_kind in rule["resources"] and "delete" in rule["verbs"]:
                    rule["resources"].remove(drop_kind)
    return objects, sa


def apply_objects(kubectl, objects: list[dict]):
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def service_account_kubeconfig(core: client.CoreV1Api, admin: Path, ns: str, sa: str,
                               path: Path) -> Path:
    token = core.create_namespaced_service_account_token(
        sa, ns, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    config = yaml.safe_load(Path(admin).read_text())
    cluster = config["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa}}],
        "current-context": sa}))
    return path


def served_longhorn_kinds(api_client) -> list[str]:
    ext = client.ApiextensionsV1Api(api_client)
    return sorted(c.spec.names.plural for c in ext.list_custom_resource_definition().items
                  if c.spec.group == "longhorn.io")


def assert_untouched(lh, before: dict, message: str):
    assert lh.counts() == before, f"{message}: {lh.counts()} != {before}"
    deleting = [brief(o) for k in UNINSTALL_KINDS for o in lh.list(k)
                if o["metadata"].get("deletionTimestamp")]
    assert not deleting, f"{message}: objects are being deleted: {deleting}"
    target = lh.get("BackupTarget", "default")
    assert target["spec"]["backupTargetURL"], f"{message}: the target URL was emptied"
    assert DELETE_TARGET_ANNOTATION not in (target["metadata"].get("annotations") or {})


def test_a_missing_permission_is_named_and_nothing_is_changed(
        api_client, backup_guard, core_v1, kubectl, kubeconfig, ns_lh, tmp_path):
    """The chart's hook Role without `replicas` (as engine issue #13547, a kind the uninstall's
    RBAC did not name): exit 2, each missing verb named, not one object touched."""
    lh = ns_lh
    ns = lh.namespace
    kinds = served_longhorn_kinds(api_client)
    assert "replicas" in kinds, kinds
    objects, sa = hook_rbac(ns, drop_kind="replicas")
    apply_objects(kubectl, objects)
    try:
        populate(lh, webhook=True, backups=4)
        lh.set_flag("true")
        before = lh.counts()
        sa_config = service_account_kubeconfig(core_v1, kubeconfig, ns, sa, tmp_path / "sa.yaml")
        proc = run_uninstall(sa_config, ns, "--force", "--timeout", "60s")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        for verb in ("get", "list", "patch", "delete"):
            assert f"  {verb} replicas.longhorn.io in namespace {ns}\n" in proc.stderr, \
                proc.stderr
        assert "missing permissions (nothing was changed)" in proc.stderr, proc.stderr
        assert proc.stderr.count(".longhorn.io in namespace") == 4, \
            f"only replicas is missing:\n{proc.stderr}"
        assert_untouched(lh, before, "after the refused uninstall")
    finally:
        kubectl("delete", "clusterrole,clusterrolebinding", f"{ns}-hook"[:63],
                "--ignore-not-found")


def test_the_charts_hook_rbac_passes_the_preflight_for_every_served_kind(
        api_client, backup_guard, core_v1, kubectl, kubeconfig, ns_lh, tmp_path):
    """Under the chart's own pre-delete hook RBAC, with every CRD of the engine this plane serves
    (22 kinds at v1.10.0), the pre-flight passes and the uninstall completes."""
    lh = ns_lh
    ns = lh.namespace
    kinds = served_longhorn_kinds(api_client)
    log(f"longhorn.io kinds served: {len(kinds)}")
    objects, sa = hook_rbac(ns)
    apply_objects(kubectl, objects)
    try:
        populate(lh, webhook=True, backups=4)
        lh.set_flag("true")
        sa_config = service_account_kubeconfig(core_v1, kubeconfig, ns, sa, tmp_path / "sa.yaml")
        proc = run_uninstall(sa_config, ns, "--force", "--timeout", "90s",
                             "--remove-webhook-configurations",
                             "e2e-hook-backup-guard-mutating,e2e-hook-backup-guard-validating")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "missing permission" not in proc.stderr, proc.stderr
        assert not lh.leftovers(), lh.leftovers()
        assert found_lines(proc.stdout), proc.stdout
    finally:
        kubectl("delete", "clusterrole,clusterrolebinding", f"{ns}-hook"[:63],
                "--ignore-not-found")
