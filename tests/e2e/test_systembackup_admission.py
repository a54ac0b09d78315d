"""SystemBackups through the real API server: the mutating webhook adds the finalizer, the default
volume backup policy and the owner reference to the default BackupTarget, once, keeping what was
already there; the validating webhook refuses a SystemBackup without a usable default target.

Each test works in a namespace of its own (backup-guard looks the target up in the request's
namespace), except the one that checks the server's own namespace, longhorn-system.
"""

import json

from bg_e2e import (
    DELETE_TARGET_ANNOTATION, FINALIZER, VALIDATOR, api_error, backup_target_ref, error_message, owner_refs, unique,
)


def _system_backup(lh, name, **metadata):
    body = lh.body("SystemBackup", name)
    body["metadata"].update(metadata)
    return body


def assert_mutated(obj, target, policy="if-not-present"):
    assert obj["metadata"].get("finalizers", []).count(FINALIZER) == 1, obj["metadata"]
    assert owner_refs(obj, "BackupTarget") == [backup_target_ref(target)], obj["metadata"]
    assert obj["spec"]["volumeBackupPolicy"] == policy


# --------------------------------------------------------------------------------------------
# creation


def test_created_system_backup_gets_owner_reference_finalizer_and_default_policy(lh):
    target = lh.default_target()
    name = unique("sb")

    created = lh.create(_system_backup(lh, name))

    assert_mutated(created, target)
    assert created["metadata"]["finalizers"] == [FINALIZER]
    (ref,) = created["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget", "name": "default",
                   "uid": target["metadata"]["uid"]}
    assert "controller" not in ref and "blockOwnerDeletion" not in ref
    # what the API server stored, not only what it answered
    assert_mutated(lh.get("SystemBackup", name), target)


def test_created_system_backup_in_longhorn_system_references_its_default_target(lh_system):
    target = lh_system.default_target()
    name = unique("sb")

    created = lh_system.create(_system_backup(lh_system, name))

    assert_mutated(created, target)
    assert_mutated(lh_system.get("SystemBackup", name), target)


def test_explicit_volume_backup_policy_is_kept(lh):
    target = lh.default_target()
    body = _system_backup(lh, unique("sb"))
    body["spec"] = {"volumeBackupPolicy": "always"}

    created = lh.create(body)

    assert_mutated(created, target, policy="always")


def test_foreign_finalizers_and_owner_references_are_kept_and_ours_appended(lh, core_v1):
    target = lh.default_target()
    cm = core_v1.create_namespaced_config_map(
        lh.namespace, {"metadata": {"name": unique("owner")}, "data": {"k": "v"}})
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "name": cm.metadata.name,
               "uid": cm.metadata.uid}
    body = _system_backup(lh, unique("sb"), finalizers=["example.com/keep-me"],
                          ownerReferences=[foreign])

    created = lh.create(body)

    assert created["metadata"]["finalizers"] == ["example.com/keep-me", FINALIZER]
    assert created["metadata"]["ownerReferences"] == [foreign, backup_target_ref(target)]


def test_system_backup_referencing_another_backup_target_gets_no_second_reference(lh):
    lh.default_target()
    other = lh.create(lh.body("BackupTarget", unique("bt"), spec={"backupTargetURL": "nfs://x:/y"}))
    body = _system_backup(lh, unique("sb"), ownerReferences=[backup_target_ref(other)])

    created = lh.create(body)

    assert owner_refs(created, "BackupTarget") == [backup_target_ref(other)]
    assert created["metadata"]["finalizers"] == [FINALIZER]


# --------------------------------------------------------------------------------------------
# applying again


def test_updating_the_returned_object_adds_nothing_twice(lh, core_v1):
    target = lh.default_target()
    cm = core_v1.create_namespaced_config_map(lh.namespace, {"metadata": {"name": unique("owner")}})
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "name": cm.metadata.name,
               "uid": cm.metadata.uid}
    created = lh.create(_system_backup(lh, unique("sb"), ownerReferences=[foreign]))
    name = created["metadata"]["name"]

    replaced = lh.replace(created)  # PUT of exactly what came back
    created["metadata"]["resourceVersion"] = replaced["metadata"]["resourceVersion"]
    created["metadata"]["labels"] = {"round": "2"}
    replaced = lh.replace(created)  # and a PUT that changes something
    patched = lh.patch("SystemBackup", name, {"metadata": {"labels": {"round": "3"}}})

    for obj in (replaced, patched, lh.get("SystemBackup", name)):
        assert obj["metadata"]["finalizers"] == [FINALIZER]
        assert obj["metadata"]["ownerReferences"] == [foreign, backup_target_ref(target)]
        assert obj["spec"]["volumeBackupPolicy"] == "if-not-present"
    assert patched["metadata"]["labels"] == {"round": "3"}


def test_server_side_apply_twice_adds_nothing_twice(lh, core_v1):
    target = lh.default_target()
    cm = core_v1.create_namespaced_config_map(lh.namespace, {"metadata": {"name": unique("owner")}})
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "name": cm.metadata.name,
               "uid": cm.metadata.uid}
    manifest = _system_backup(lh, unique("sb"), ownerReferences=[foreign])

    first = lh.apply(manifest)
    second = lh.apply(manifest)
    manifest["metadata"]["labels"] = {"applied": "again"}
    third = lh.apply(manifest)

    for obj in (first, second, third, lh.get("SystemBackup", manifest["metadata"]["name"])):
        assert obj["metadata"]["finalizers"] == [FINALIZER]
        assert obj["metadata"]["ownerReferences"] == [foreign, backup_target_ref(target)]
    assert third["metadata"]["labels"] == {"applied": "again"}


def test_kubectl_apply_twice_adds_nothing_twice(lh, kubectl):
    target = lh.default_target()
    name = unique("sb")
    manifest = _system_backup(lh, name)
    manifest["metadata"]["namespace"] = lh.namespace

    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    manifest["metadata"]["labels"] = {"applied": "twice"}
    kubectl("apply", "-f", "-", input=json.dumps(manifest))

    got = lh.get("SystemBackup", name)
    assert got["metadata"]["labels"] == {"applied": "twice"}
    assert got["metadata"]["finalizers"] == [FINALIZER]
    assert got["metadata"]["ownerReferences"] == [backup_target_ref(target)]


# --------------------------------------------------------------------------------------------
# objects made without the webhook (an older release) and objects being deleted


def test_system_backup_made_without_webhook_gets_reference_on_its_next_update(lh, webhook_configs):
    target = lh.default_target()
    name = unique("sb-legacy")
    webhook_configs.delete()
    webhook_configs.wait_absent(lh.namespace)
    legacy = lh.create(_system_backup(lh, name))
    assert "ownerReferences" not in legacy["metadata"]
    assert "finalizers" not in legacy["metadata"]
    webhook_configs.restore()
    webhook_configs.wait_active(lh.namespace)

    # the object returned by the update itself carries the reference (the webhook added it, not
    # some later reconciliation)
    updated = lh.patch("SystemBackup", name, {"metadata": {"labels": {"upgraded": "true"}}})

    assert owner_refs(updated, "BackupTarget") == [backup_target_ref(target)]
    assert updated["metadata"]["finalizers"] == [FINALIZER]
    assert updated["spec"]["volumeBackupPolicy"] == "if-not-present"
    assert updated["metadata"]["labels"] == {"upgraded": "true"}


def test_system_backup_being_deleted_is_not_mutated_and_its_finalizer_can_be_removed(lh):
    target = lh.default_target()
    name = unique("sb")
    lh.create(_system_backup(lh, name))

    lh.delete("SystemBackup", name)
    deleting = lh.get("SystemBackup", name)
    assert deleting["metadata"].get("deletionTimestamp"), "the finalizer holds the object"

    released = lh.patch("SystemBackup", name, {"metadata": {"finalizers": []}})
    assert not released["metadata"].get("finalizers"), \
        "the mutating webhook re-added a finalizer to an object being deleted"
    lh.wait_gone("SystemBackup", name, timeout=10)
    assert lh.get("BackupTarget", "default")["metadata"]["uid"] == target["metadata"]["uid"]


def test_no_reference_to_a_default_target_that_is_being_deleted(lh):
    body = lh.body("BackupTarget", "default", spec={"backupTargetURL": "nfs://x:/y"},
                   annotations={DELETE_TARGET_ANNOTATION: "true"})
    body["metadata"]["finalizers"] = ["example.com/hold"]
    lh.create(body)
    lh.delete("BackupTarget", "default")
    assert lh.get("BackupTarget", "default")["metadata"].get("deletionTimestamp")
    name = unique("sb")

    created = lh.create(_system_backup(lh, name))

    # a reference to a target that is going away would make the garbage collector delete the new
    # SystemBackup at once
    assert owner_refs(created, "BackupTarget") == []
    assert created["metadata"]["finalizers"] == [FINALIZER]
    lh.strip_finalizers("BackupTarget", "default")


# --------------------------------------------------------------------------------------------
# validation


def test_system_backup_without_default_target_is_denied(lh):
    e = api_error(lh.create, _system_backup(lh, unique("sb")))

    assert e.status == 403
    msg = error_message(e)
    assert VALIDATOR in msg and "denied the request" in msg
    assert "BackupTarget" in msg and '"default"' in msg
    assert lh.list("SystemBackup") == []


def test_system_backup_with_empty_target_url_is_denied(lh):
    lh.create(lh.body("BackupTarget", "default", spec={"backupTargetURL": ""}))

    e = api_error(lh.create, _system_backup(lh, unique("sb")))

    assert e.status == 403
    msg = error_message(e)
    assert VALIDATOR in msg and "backupTargetURL" in msg
    assert lh.list("SystemBackup") == []


def test_system_backup_is_allowed_once_the_default_target_has_a_url(lh):
    lh.create(lh.body("BackupTarget", "default", spec={"backupTargetURL": ""}))
    api_error(lh.create, _system_backup(lh, unique("sb")))
    target = lh.patch("BackupTarget", "default", {"spec": {"backupTargetURL": "nfs://x:/y"}})

    created = lh.create(_system_backup(lh, unique("sb")))

    assert_mutated(created, target)

