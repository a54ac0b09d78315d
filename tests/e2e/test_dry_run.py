"""Server-side dry-run (dryRun=All) requests go through backup-guard like real ones (the webhooks
declare sideEffects: None): mutations and verdicts come back, nothing is persisted."""

from bg_e2e import (
    CR_ONLY_WARNING, DELETE_TARGET_ANNOTATION, FINALIZER, GROUP, VALIDATOR, VERSION, api_error,
    backup_target_ref, error_message, raw, unique,
)


def test_dry_run_create_of_system_backup_returns_the_mutated_object_and_persists_nothing(lh):
    target = lh.default_target()
    name = unique("sb-dry")

    got = lh.create(lh.body("SystemBackup", name), dry_run="All")

    assert got["metadata"]["finalizers"] == [FINALIZER]
    assert got["metadata"]["ownerReferences"] == [backup_target_ref(target)]
    assert got["spec"]["volumeBackupPolicy"] == "if-not-present"
    assert lh.get_or_none("SystemBackup", name) is None
    assert lh.list("SystemBackup") == []


def test_dry_run_update_of_system_backup_adds_the_reference_without_storing_it(lh,
                                                                                webhook_configs):
    target = lh.default_target()
    name = unique("sb-dry")
    webhook_configs.delete()
    webhook_configs.wait_absent(lh.namespace)
    legacy = lh.create(lh.body("SystemBackup", name))
    webhook_configs.restore()
    webhook_configs.wait_active(lh.namespace)

    got = lh.api.patch_namespaced_custom_object(
        GROUP, VERSION, lh.namespace, "systembackups", name,
        {"metadata": {"labels": {"try": "it"}}}, dry_run="All")

    assert got["metadata"]["ownerReferences"] == [backup_target_ref(target)]
    assert got["metadata"]["finalizers"] == [FINALIZER]
    stored = lh.get("SystemBackup", name)
    assert stored["metadata"]["resourceVersion"] == legacy["metadata"]["resourceVersion"]
    assert "ownerReferences" not in stored["metadata"]


def test_dry_run_create_of_system_backup_without_target_is_denied(lh):
    e = api_error(lh.create, lh.body("SystemBackup", unique("sb-dry")), dry_run="All")

    assert e.status == 403
    assert VALIDATOR in error_message(e)


def test_dry_run_create_of_unlabelled_backup_is_denied(lh):
    e = api_error(lh.create, lh.body("Backup", unique("b-dry"), spec={"snapshotName": "s"}),
                  dry_run="All")

    assert e.status == 422
    assert "backup-volume" in error_message(e)


def test_dry_run_delete_of_failed_backup_is_allowed_and_keeps_it(lh):
    lh.default_target()
    name = unique("backup-failed")
    lh.failed_backup(name)

    resp = raw(lh.api.delete_namespaced_custom_object, GROUP, VERSION, lh.namespace, "backups",
               name, dry_run="All")

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings
    kept = lh.get("Backup", name)
    assert kept["metadata"].get("deletionTimestamp") is None


def test_dry_run_delete_of_default_target_is_denied_and_with_annotation_allowed(lh):
    lh.default_target()

    e = api_error(lh.delete, "BackupTarget", "default", dry_run="All")
    assert e.status == 403
    assert DELETE_TARGET_ANNOTATION in error_message(e)

    lh.patch("BackupTarget", "default",
             {"metadata": {"annotations": {DELETE_TARGET_ANNOTATION: "true"}}})
    lh.delete("BackupTarget", "default", dry_run="All")

    assert lh.get("BackupTarget", "default")["metadata"].get("deletionTimestamp") is None
