"""Deleting the default BackupTarget through the real API server: refused unless it is annotated
longhorn.io/delete-backup-target-from-longhorn or the deleting-confirmation-flag Setting is
"true"; other BackupTargets are not guarded."""

import pytest
from kubernetes import client

from bg_e2e import (
    CONFIRMATION_FLAG, DELETE_TARGET_ANNOTATION, VALIDATOR, NamespacedLonghorn, api_error,
    error_message, unique, wait_until,
)


def test_default_target_delete_is_denied_with_a_message_naming_the_annotation(lh):
    lh.default_target()

    e = api_error(lh.delete, "BackupTarget", "default")

    assert e.status == 403, e
    msg = error_message(e)
    assert VALIDATOR in msg and "denied the request" in msg
    assert DELETE_TARGET_ANNOTATION in msg, msg
    assert CONFIRMATION_FLAG in msg, msg
    assert lh.get("BackupTarget", "default")["metadata"].get("deletionTimestamp") is None


# Values that Go's strconv.ParseBool, as the engine reads the flag, does not take as true.
@pytest.mark.parametrize("value", ["false", "", "0", "F", "yes", "tRUE", " true"])
def test_default_target_delete_is_denied_while_the_flag_is_not_true(lh, value):
    lh.default_target()
    lh.setting(CONFIRMATION_FLAG, value)

    e = api_error(lh.delete, "BackupTarget", "default")

    assert e.status == 403, e
    assert DELETE_TARGET_ANNOTATION in error_message(e)
    assert lh.get_or_none("BackupTarget", "default") is not None


def test_default_target_delete_is_allowed_with_the_annotation(lh):
    lh.default_target(annotations={DELETE_TARGET_ANNOTATION: "true"})

    lh.delete("BackupTarget", "default")

    lh.wait_gone("BackupTarget", "default", timeout=10)


def test_default_target_delete_is_allowed_once_annotated(lh):
    lh.default_target()
    api_error(lh.delete, "BackupTarget", "default")
    lh.patch("BackupTarget", "default",
             {"metadata": {"annotations": {DELETE_TARGET_ANNOTATION: ""}}})

    lh.delete("BackupTarget", "default")

    lh.wait_gone("BackupTarget", "default", timeout=10)


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "t", "T"])
def test_default_target_delete_is_allowed_while_the_flag_is_true(lh, value):
    lh.default_target()
    lh.setting(CONFIRMATION_FLAG, value)

    lh.delete("BackupTarget", "default")

    lh.wait_gone("BackupTarget", "default", timeout=10)


def test_default_target_delete_follows_the_flag_as_it_changes(lh):
    lh.default_target()
    lh.setting(CONFIRMATION_FLAG, "true")
    lh.setting(CONFIRMATION_FLAG, "false")
    assert api_error(lh.delete, "BackupTarget", "default").status == 403

    lh.setting(CONFIRMATION_FLAG, "true")
    lh.delete("BackupTarget", "default")

    lh.wait_gone("BackupTarget", "default", timeout=10)


def test_flag_in_another_namespace_does_not_confirm(lh, custom_objects, core_v1):
    other_ns = unique("e2e-other")
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other_ns)))
    other = NamespacedLonghorn(custom_objects, other_ns)
    try:
        other.setting(CONFIRMATION_FLAG, "true")
        lh.default_target()

        e = api_error(lh.delete, "BackupTarget", "default")

        assert e.status == 403
    finally:
        other.clean()
        core_v1.delete_namespace(other_ns)


def test_other_backup_targets_are_deleted_without_confirmation(lh):
    lh.default_target()
    name = unique("bt-secondary")
    lh.create(lh.body("BackupTarget", name, spec={"backupTargetURL": "nfs://x:/y"}))

    lh.delete("BackupTarget", name)

    lh.wait_gone("BackupTarget", name, timeout=10)


def test_deleting_the_default_target_cascades_to_its_system_backups(lh):
    target = lh.default_target(annotations={DELETE_TARGET_ANNOTATION: "true"})
    name = unique("sb")
    created = lh.create(lh.body("SystemBackup", name))
    assert created["metadata"]["ownerReferences"][0]["uid"] == target["metadata"]["uid"]

    lh.delete("BackupTarget", "default")

    lh.wait_gone("BackupTarget", "default", timeout=10)
    # the garbage collector deletes the SystemBackup (its finalizer may keep it a while longer)
    wait_until(lambda: (o := lh.get_or_none("SystemBackup", name)) is None
               or o["metadata"].get("deletionTimestamp"),
               timeout=30, message=f"the garbage collector to delete SystemBackup {name}")
