"""docs/CONTRACT.md's third acceptance scenario, "Beside the engine": on the engine's own CRDs, with objects
made by the engine's own typed client (tests/engine) and its target sync, a user deletes a
BackupVolume, a Completed Backup and a Ready SystemBackup made before the upgrade (no owner
reference) of an available target. backup-guard leaves all three to the engine: no finalizer
released, nothing labelled delete-custom-resource-only, no child deleted. Once the target's URL is
emptied, the engine would delete nothing in the store, and backup-guard releases them."""

import time

import pytest

from bg_e2e import FINALIZER
from processor_support import (  # noqa: F401 - fixtures
    CR_ONLY_LABEL, backup_obj, backup_volume_obj, brief, default_target, finalizers_of, labels_of, log, ns_lh, poll,
    proc_ns, start_processor, system_backup_obj, target_owner_refs,
)

HOLD_SECONDS = 6  # longer than the processor's 5 s resync: every object was looked at again


@pytest.mark.acceptance
def test_deletions_of_an_available_target_are_left_to_the_engine_until_its_url_is_emptied(
        backup_guard, backup_guard_factory, ns_lh):
    lh = ns_lh
    server = start_processor(backup_guard_factory, lh.namespace)
    lh.set_flag("false")
    default_target(lh)

    # The engine's own target sync: a BackupVolume and its Backups as it makes them from the store.
    # Admission must never refuse these (engine issue #11337 was such a refusal).
    synced = lh.engine.sync("default", [{"name": "vol-1", "backups": ["backup-a", "backup-b"]}])
    [bv] = [o for o in synced if o["kind"] == "BackupVolume"]
    synced_backups = [o["metadata"]["name"] for o in synced if o["kind"] == "Backup"]
    assert sorted(synced_backups) == ["backup-a", "backup-b"], synced
    for name in synced_backups:
        b = lh.get("Backup", name)
        assert b["status"]["state"] == "Completed" and b["status"]["url"], brief(b)
    # A Completed Backup the user made (from a snapshot) of another volume, with its BackupVolume.
    lh.apply(backup_volume_obj("vol-2"), backup_obj("backup-user", "vol-2", "default", "Completed"))
    # A Ready SystemBackup; the mutating webhook gives it its owner reference on CREATE.
    lh.apply(system_backup_obj("sb-before-upgrade"))

    lh.delete("BackupVolume", bv["metadata"]["name"])
    lh.delete("Backup", "backup-user")
    lh.delete("SystemBackup", "sb-before-upgrade")
    # As made before the upgrade: no owner reference. Nothing puts one on an object being
    # deleted (the mutator skips it, so does the processor's upgrade rule).
    lh.patch("SystemBackup", "sb-before-upgrade", {"metadata": {"ownerReferences": None}})
    sb = lh.get("SystemBackup", "sb-before-upgrade")
    assert not target_owner_refs(sb) and sb["metadata"].get("deletionTimestamp"), brief(sb)

    held = [("BackupVolume", bv["metadata"]["name"]), ("Backup", "backup-user"),
            ("SystemBackup", "sb-before-upgrade")]
    untouched = [("Backup", n) for n in synced_backups] + [("BackupVolume", "bv-vol-2")]
    t0 = time.monotonic()
    while time.monotonic() - t0 < HOLD_SECONDS:
        for kind, name in held + untouched:
            o = lh.get_or_none(kind, name)
            assert o is not None, f"{kind} {name} was released:\n{server.log_tail()}"
            assert CR_ONLY_LABEL not in labels_of(o), f"{kind} {name} was labelled: {brief(o)}"
        for kind, name in held:
            o = lh.get(kind, name)
            assert finalizers_of(o) == [FINALIZER], brief(o)
        for kind, name in untouched:
            o = lh.get(kind, name)
            assert not o["metadata"].get("deletionTimestamp"), \
                f"backup-guard deleted a child the engine would delete itself: {brief(o)}"
        time.sleep(0.25)
    log(f"all three left to the engine for {HOLD_SECONDS}s")

    # The URL emptied: the engine deletes nothing in the store now, and backup-guard releases.
    t1 = time.monotonic()
    lh.patch("BackupTarget", "default", {"spec": {"backupTargetURL": ""}})
    for kind, name in held:
        poll(lambda k=kind, n=name: lh.gone(k, n), timeout=30,
             message=lambda k=kind, n=name: f"{k} {n} to be released once the URL is emptied: "
                                            f"{brief(lh.get_or_none(k, n) or {})}\n"
                                            f"{server.log_tail()}")
    log(f"released {time.monotonic() - t1:.2f}s after the URL was emptied")
    assert server.running(), server.log_tail()
