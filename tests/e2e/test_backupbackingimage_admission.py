"""BackupBackingImage DELETE through the real API server (SPEC.md: "as a Backup", with
spec.backupTargetName or its backup-target label as its target): the deletion is never refused,
and when its BackupTarget is gone, unnamed, or it is labelled delete-custom-resource-only the
client is told that only the custom resource goes."""

from bg_e2e import CR_ONLY_WARNING, DELETE_CR_ONLY_LABEL, GROUP, VERSION, raw, unique


def _create(lh, name, target="default", labels=None):
    lh.create(lh.body("BackupBackingImage", name,
                      labels={"backing-image": "img", **({"backup-target": target} if target else {}),
                              **(labels or {})},
                      spec={"backingImage": "img", "backupTargetName": target,
                            "userCreated": True}))


def _delete_raw(lh, name):
    return raw(lh.api.delete_namespaced_custom_object, GROUP, VERSION, lh.namespace,
               "backupbackingimages", name)


def test_backing_image_backup_delete_with_target_gone_is_allowed_with_warning(lh):
    name = unique("bbi-gone")
    _create(lh, name, target="nfs")  # no BackupTarget "nfs" exists

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    ours = [w for w in resp.warnings if CR_ONLY_WARNING in w]
    assert ours and 'BackupTarget "nfs" not found' in ours[0], resp.warnings
    lh.wait_gone("BackupBackingImage", name, timeout=10)


def test_backing_image_backup_delete_with_no_target_named_is_allowed_with_warning(lh):
    name = unique("bbi-unnamed")
    _create(lh, name, target="")

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings
    lh.wait_gone("BackupBackingImage", name, timeout=10)


def test_backing_image_backup_delete_labelled_custom_resource_only_is_allowed_with_warning(lh):
    lh.default_target()
    name = unique("bbi-cr-only")
    _create(lh, name, labels={DELETE_CR_ONLY_LABEL: "true"})

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert any(CR_ONLY_WARNING in w and DELETE_CR_ONLY_LABEL in w for w in resp.warnings), \
        resp.warnings
    lh.wait_gone("BackupBackingImage", name, timeout=10)


def test_backing_image_backup_delete_with_target_present_is_allowed_without_warning(lh):
    lh.default_target()
    name = unique("bbi-present")
    _create(lh, name)

    resp = _delete_raw(lh, name)

    assert resp.status == 200, resp
    assert not any(CR_ONLY_WARNING in w for w in resp.warnings), resp.warnings
    lh.wait_gone("BackupBackingImage", name, timeout=10)
