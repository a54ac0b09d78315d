"""Backups through the real API server: a failed Backup (no target name, no backup-volume label)
can always be deleted and the client is told that only the custom resource goes; a Backup is
created only with a backup-volume label and a supported backupMode."""

from bg_e2e import (
    CR_ONLY_WARNING, DELETE_CR_ONLY_LABEL, FINALIZER, GROUP, VALIDATOR, VERSION, api_error,
    error_message, raw, unique,
)


def _delete_raw(lh, name, **kw):
    """DELETE of a Backup; returns status, body and the Warning headers the client received."""
    return raw(lh.api.delete_namespaced_custom_object, GROUP, VERSION, lh.namespace, "backups",
               name, **kw)


def _completed_backup(lh, name, volume, target="default"):
    lh.create(lh.body("Backup", name, labels={"backup-volume": volume, "backup-target": target},
                      spec={"snapshotName": f"snap-{name}", "backupMode": "full"}))
    lh.patch_status("Backup", name, {"state": "Completed", "backupTargetName": target,
                                     "volumeName": volume})
    return lh.get("Backup", name)


# --------------------------------------------------------------------------------------------
# DELETE


def test_failed_backup_delete_is_allowed_with_only_custom_resource_warning(lh):
    lh.default_target()
    name = unique("backup-failed")
    lh.failed_backup(name)

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    ours = [w for w in resp.warnings if CR_ONLY_WARNING in w]
    assert ours, f"no '{CR_ONLY_WARNING}' warning in {resp.warnings}"
    lh.wait_gone("Backup", name, timeout=10)


def test_failed_backup_delete_without_any_target_is_allowed(lh):
    # not even a BackupTarget exists: still NotFound, never an error
    name = unique("backup-failed")
    lh.failed_backup(name)

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings
    lh.wait_gone("Backup", name, timeout=10)


def test_failed_backup_delete_warning_is_shown_by_kubectl(lh, kubectl):
    name = unique("backup-failed")
    lh.failed_backup(name)

    proc = kubectl("delete", "-n", lh.namespace, "backups.longhorn.io", name)

    assert f'"{name}" deleted' in proc.stdout
    assert "Warning:" in proc.stderr and CR_ONLY_WARNING in proc.stderr, proc.stderr
    lh.wait_gone("Backup", name, timeout=10)


def test_failed_backup_with_finalizer_is_marked_for_deletion(lh):
    # the deletion itself is admitted; the finalizer keeps the object until it is released
    name = unique("backup-failed")
    lh.failed_backup(name)
    lh.patch("Backup", name, {"metadata": {"finalizers": [FINALIZER]}})

    resp = _delete_raw(lh, name)

    assert resp.status in (200, 202), resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings
    assert lh.get("Backup", name)["metadata"].get("deletionTimestamp")
    lh.strip_finalizers("Backup", name)
    lh.wait_gone("Backup", name, timeout=10)


def test_backup_with_empty_target_name_but_label_is_deleted_with_warning(lh):
    lh.default_target()
    name = unique("backup-errored")
    lh.create(lh.body("Backup", name, labels={"backup-volume": "vol-a"},
                      spec={"snapshotName": "snap-a"}))
    lh.patch_status("Backup", name, {"state": "Error", "error": "boom"})

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings


def test_completed_backup_whose_backup_volume_is_gone_is_deleted_with_warning(lh):
    lh.default_target()
    name = unique("backup-orphan")
    _completed_backup(lh, name, "vol-gone")

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings


def test_completed_backup_whose_target_is_gone_is_deleted_with_warning(lh):
    name = unique("backup-orphan")
    _completed_backup(lh, name, "vol-b", target="gone-target")

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings


def test_backup_labelled_delete_custom_resource_only_is_deleted_with_warning(lh):
    lh.default_target()
    volume = "vol-c"
    lh.create(lh.body("BackupVolume", unique("bv"),
                      labels={"backup-target": "default", "backup-volume": volume},
                      spec={"backupTargetName": "default", "volumeName": volume}))
    name = unique("backup")
    _completed_backup(lh, name, volume)
    lh.patch("Backup", name, {"metadata": {"labels": {DELETE_CR_ONLY_LABEL: "true"}}})

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings


def test_completed_backup_with_its_parents_is_deleted_without_warning(lh):
    lh.default_target()
    volume = "vol-d"
    lh.create(lh.body("BackupVolume", unique("bv"),
                      labels={"backup-target": "default", "backup-volume": volume},
                      spec={"backupTargetName": "default", "volumeName": volume}))
    name = unique("backup")
    _completed_backup(lh, name, volume)

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert not [w for w in resp.warnings if CR_ONLY_WARNING in w], resp.warnings
    lh.wait_gone("Backup", name, timeout=10)


# --------------------------------------------------------------------------------------------
# CREATE


def test_backup_without_backup_volume_label_is_denied_naming_the_label(lh):
    lh.default_target()
    name = unique("backup")

    e = api_error(lh.create, lh.body("Backup", name, spec={"snapshotName": "snap"}))

    assert e.status == 422, e
    msg = error_message(e)
    assert VALIDATOR in msg and "denied the request" in msg
    assert "backup-volume" in msg, msg
    assert lh.get_or_none("Backup", name) is None


def test_backup_with_differential_mode_is_denied_naming_the_field(lh):
    name = unique("backup")

    e = api_error(lh.create, lh.body("Backup", name, labels={"backup-volume": "vol-e"},
                                     spec={"snapshotName": "snap", "backupMode": "differential"}))

    # The engine's CRD has the enumeration, so the API server's schema check refuses it before
    # any webhook runs; backup-guard's own refusal of it is tested in tests/integration.
    assert e.status == 422, e
    msg = error_message(e)
    assert "spec.backupMode" in msg and "differential" in msg, msg
    assert lh.get_or_none("Backup", name) is None


def test_backup_with_supported_modes_is_created(lh):
    for mode in ("full", "incremental", ""):
        name = unique("backup")
        spec = {"snapshotName": "snap", "backupMode": mode}
        created = lh.create(lh.body("Backup", name, labels={"backup-volume": "vol-f"}, spec=spec))
        assert created["spec"]["backupMode"] == mode
    name = unique("backup")
    created = lh.create(lh.body("Backup", name, labels={"backup-volume": "vol-f"},
                                spec={"snapshotName": "snap"}))
    assert "backupMode" not in created["spec"]
