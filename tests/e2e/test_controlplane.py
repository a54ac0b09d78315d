"""Smoke tests of the e2e control plane itself: CRDs, custom objects, garbage collection.

They need no backup-guard server (marker no_webhook): run-e2e.sh runs them after the CRDs are
installed and before the webhooks are registered, and they work in their own namespace.
"""

import pytest
from kubernetes import client

from bg_e2e import GROUP, PLURALS, VERSION, Longhorn, wait_until

pytestmark = pytest.mark.no_webhook

NO_STATUS_SUBRESOURCE: set = set()  # the engine's Setting has one too


def test_apiserver_is_ready(kubectl):
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_crds_are_established(api_client):
    ext = client.ApiextensionsV1Api(api_client)
    crds = {c.metadata.name: c for c in ext.list_custom_resource_definition().items}
    for kind, plural in PLURALS.items():
        name = f"{plural}.{GROUP}"
        assert name in crds, f"CRD {name} is missing"
        crd = crds[name]
        assert crd.spec.scope == "Namespaced"
        assert crd.spec.names.kind == kind
        assert crd.spec.names.list_kind == f"{kind}List"
        established = [c for c in crd.status.conditions or [] if c.type == "Established"]
        assert established and established[0].status == "True", f"{name} is not Established"
        # The engine's CRDs: v1beta2 served and stored; before v1.10 also v1beta1, never stored.
        (version,) = [v for v in crd.spec.versions if v.storage]
        assert (version.name, version.served, version.storage) == (VERSION, True, True)
        assert crd.status.stored_versions == [VERSION], name
        if crd.spec.conversion is not None:
            assert crd.spec.conversion.strategy == "None", f"{name}: no conversion webhook runs here"
        has_status = bool(version.subresources and version.subresources.status is not None)
        assert has_status == (plural not in NO_STATUS_SUBRESOURCE), name


def test_namespace_carries_metadata_name_label(core_v1, test_namespace):
    # The webhooks' namespaceSelector relies on this label, which the API server sets itself.
    ns = core_v1.read_namespace(test_namespace)
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == test_namespace


def test_custom_objects_round_trip(custom_objects, test_namespace):
    lh = Longhorn(custom_objects, test_namespace)
    lh.create(lh.body("BackupTarget", "default",
                      spec={"backupTargetURL": "s3://bucket@us-east-1/", "credentialSecret": "",
                            "pollInterval": "300s", "someFutureField": {"kept": True}}))
    got = lh.get("BackupTarget", "default")
    assert got["spec"]["backupTargetURL"] == "s3://bucket@us-east-1/"
    assert got["spec"]["pollInterval"] == "300s"
    # The engine's CRDs are structural without preserve-unknown-fields: what they do not declare
    # is pruned, as it would be in a cluster running the engine.
    assert "someFutureField" not in got["spec"], got["spec"]

    lh.patch_status("BackupTarget", "default",
                    {"available": True, "lastSyncedAt": "2026-01-01T00:00:00Z"})
    got = lh.get("BackupTarget", "default")
    assert got["status"] == {"available": True, "lastSyncedAt": "2026-01-01T00:00:00Z"}

    lh.create(lh.body("Setting", "deleting-confirmation-flag", value="false"))
    assert lh.get("Setting", "deleting-confirmation-flag")["value"] == "false"

    lh.create(lh.body("Backup", "backup-1", labels={"backup-volume": "vol-1"},
                      spec={"snapshotName": "snap-1", "labels": {"a": "b"}, "backupMode": "full"}))
    lh.patch_status("Backup", "backup-1", {"state": "Error", "error": "boom"})
    got = lh.get("Backup", "backup-1")
    assert got["metadata"]["labels"]["backup-volume"] == "vol-1"
    assert got["status"]["state"] == "Error"
    assert [b["metadata"]["name"] for b in lh.list("Backup", label_selector="backup-volume=vol-1")] \
        == ["backup-1"]


def _owned_system_backup(lh: Longhorn, name: str, target: dict, finalizers=None) -> dict:
    body = lh.body("SystemBackup", name, spec={"volumeBackupPolicy": "if-not-present"})
    body["metadata"]["ownerReferences"] = [{
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BackupTarget",
        "name": target["metadata"]["name"],
        "uid": target["metadata"]["uid"],
    }]
    if finalizers:
        body["metadata"]["finalizers"] = list(finalizers)
    return lh.create(body)


def test_garbage_collector_cascades_owner_references(custom_objects, test_namespace):
    lh = Longhorn(custom_objects, test_namespace)
    target = lh.create(lh.body("BackupTarget", "default", spec={"backupTargetURL": "nfs://x:/y"}))
    _owned_system_backup(lh, "system-backup-1", target)
    assert lh.get("SystemBackup", "system-backup-1")["metadata"]["ownerReferences"][0]["uid"] \
        == target["metadata"]["uid"]

    lh.delete("BackupTarget", "default")
    lh.wait_gone("BackupTarget", "default")
    # The garbage collector may first have to discover the new resource types (it re-reads
    # discovery every 30 s), so allow a generous margin.
    lh.wait_gone("SystemBackup", "system-backup-1", timeout=120)


def test_garbage_collector_respects_finalizers(custom_objects, test_namespace):
    lh = Longhorn(custom_objects, test_namespace)
    target = lh.create(lh.body("BackupTarget", "default", spec={"backupTargetURL": "nfs://x:/y"}))
    _owned_system_backup(lh, "system-backup-2", target, finalizers=["longhorn.io"])

    lh.delete("BackupTarget", "default")
    lh.wait_gone("BackupTarget", "default")
    stuck = wait_until(
        lambda: (o := lh.get("SystemBackup", "system-backup-2"))["metadata"].get("deletionTimestamp")
        and o,
        timeout=120, message="the garbage collector to delete system-backup-2")
    assert stuck["metadata"]["finalizers"] == ["longhorn.io"], "the object is held by its finalizer"

    lh.remove_finalizers("SystemBackup", "system-backup-2")
    lh.wait_gone("SystemBackup", "system-backup-2")
