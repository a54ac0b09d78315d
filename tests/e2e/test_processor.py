"""The finalizer processor inside `backup-guard serve`, against a real API server: it keeps the
data a Completed Backup guards, releases what has nothing to guard, cascades a BackupTarget whose
URL was emptied, and lets the garbage collector's owner-reference cascade finish.

Each test runs its own processor (`serve --namespace <its namespace>`, a lease of its own); the
session server keeps answering the webhooks.
"""

import time

import pytest

from bg_e2e import FINALIZER
from processor_support import (  # noqa: F401 - fixtures
    CR_ONLY_LABEL, DELETE_TARGET_ANNOTATION, WatchRecorder, backing_image_backup, backup_volume,
    brief, completed_backup, default_target, failed_backup, finalizers_of, labels_of, log,
    ns_lh, poll, proc_ns, scrape, start_processor, system_backup, target_owner_refs,
)

pytestmark = pytest.mark.processor


def test_completed_backup_is_protected_failed_backup_released(backup_guard, backup_guard_factory,
                                                              ns_lh):
    """A Completed Backup whose BackupVolume and BackupTarget exist, not marked
    delete-custom-resource-only, with the flag "false", keeps its finalizer while deleting; a failed
    Backup in the same namespace is released at once. Once the uninstall is confirmed, the
    protected one goes after the release grace."""
    lh = ns_lh
    ns = lh.namespace
    grace = 5
    server = start_processor(backup_guard_factory, ns, "--release-grace", f"{grace}s")
    lh.set_flag("false")
    default_target(lh)
    backup_volume(lh, "vol-1")
    completed_backup(lh, "backup-completed", "vol-1")
    failed_backup(lh, "backup-failed", "vol-1")

    t0 = time.monotonic()
    lh.delete("Backup", "backup-completed")
    lh.delete("Backup", "backup-failed")
    poll(lambda: lh.gone("Backup", "backup-failed"), timeout=10,
         message=lambda: f"the failed Backup to be released: "
                         f"{brief(lh.get('Backup', 'backup-failed'))}\n{server.log_tail()}")
    log(f"failed Backup released in {time.monotonic() - t0:.2f}s")

    # Watch the protected one for 10 s while the processor runs.
    while time.monotonic() - t0 < 10:
        b = lh.get_or_none("Backup", "backup-completed")
        assert b is not None, f"the Completed Backup was released:\n{server.log_tail()}"
        assert b["metadata"].get("deletionTimestamp"), brief(b)
        assert finalizers_of(b) == [FINALIZER], brief(b)
        assert CR_ONLY_LABEL not in labels_of(b), brief(b)
        assert b["status"]["state"] == "Completed", brief(b)
        time.sleep(0.25)
    assert server.running(), server.log_tail()
    assert lh.get_or_none("BackupVolume", "bv-vol-1") is not None
    assert lh.get("BackupTarget", "default")["spec"]["backupTargetURL"]

    m = scrape(server)
    assert m.sum("backup_guard_finalizer_releases_total", kind="Backup") == 1, \
        m.lines("backup_guard_finalizer_releases_total")
    poll(lambda: scrape(server).value("backup_guard_objects_deleting", kind="Backup") == 1,
         timeout=6, message=lambda: "backup_guard_objects_deleting{kind=Backup} == 1: "
                                    + scrape(server).lines("backup_guard_objects_deleting"))

    # Confirmed uninstall: held longer than the grace, so it is released now.
    t1 = time.monotonic()
    lh.set_flag("true")
    poll(lambda: lh.gone("Backup", "backup-completed"), timeout=grace + 10,
         message=lambda: f"the Completed Backup to be released once the uninstall is confirmed:\n"
                         f"{server.log_tail()}")
    log(f"protected Backup released {time.monotonic() - t1:.2f}s after the flag became true")
    m = scrape(server)
    assert m.sum("backup_guard_finalizer_releases_total", kind="Backup",
                 reason="uninstall-grace") == 1, m.lines("backup_guard_finalizer_releases_total")


def test_backup_target_url_emptied_cascades(backup_guard, backup_guard_factory, kubeconfig, ns_lh):
    """Emptying the default BackupTarget's URL (not deleting it) marks its Backups, BackupVolumes,
    BackupBackingImages and SystemBackups delete-custom-resource-only and deletes them; they are
    released; the target stays. Another target's children are not touched."""
    lh = ns_lh
    ns = lh.namespace
    server = start_processor(backup_guard_factory, ns)
    lh.set_flag("false")
    default_target(lh)
    default_target(lh, url="nfs://backup.example:/export", name="secondary")
    for v in ("vol-1", "vol-2"):
        backup_volume(lh, v)
        completed_backup(lh, f"{v}-completed", v)
        failed_backup(lh, f"{v}-failed", v)
    backing_image_backup(lh, "image-a")
    system_backup(lh, "system-backup-1")
    system_backup(lh, "system-backup-2", state="Uploading")
    # the other target's children
    backup_volume(lh, "other-vol", target="secondary")
    completed_backup(lh, "other-completed", "other-vol", target="secondary")
    backing_image_backup(lh, "image-other", target="secondary")
    for n in ("system-backup-1", "system-backup-2"):
        assert [r["name"] for r in target_owner_refs(lh.get("SystemBackup", n))] == ["default"]

    children = {"Backup": ["vol-1-completed", "vol-1-failed", "vol-2-completed", "vol-2-failed"],
                "BackupVolume": ["bv-vol-1", "bv-vol-2"],
                "BackupBackingImage": ["bbi-image-a"],
                "SystemBackup": ["system-backup-1", "system-backup-2"]}
    rec = WatchRecorder(kubeconfig, ns, ["backups", "backupvolumes", "backupbackingimages",
                                         "systembackups", "backuptargets"]).start()
    try:
        t0 = time.monotonic()
        lh.patch("BackupTarget", "default", {"spec": {"backupTargetURL": ""}})

        def all_gone():
            return all(lh.gone(k, n) for k, names in children.items() for n in names)

        poll(all_gone, timeout=30, message=lambda: (
            "the emptied target's children to be gone; left: "
            + str([brief(o) for k in children for o in lh.list(k, label_selector="")
                   if o["metadata"]["name"] in children[k]])
            + f"\nprocessor log:\n{server.log_tail()}"))
        log(f"children of the emptied target gone in {time.monotonic() - t0:.2f}s")
        time.sleep(1)  # give a wrong cascade of the other target's children a chance to show
    finally:
        rec.stop()

    target = lh.get("BackupTarget", "default")
    assert not target["metadata"].get("deletionTimestamp"), brief(target)
    assert finalizers_of(target) == [FINALIZER], brief(target)
    assert target["spec"]["backupTargetURL"] == ""
    # Each child was marked delete-custom-resource-only before it went.
    deleted = {(e.plural, e.name): e for e in rec.deleted()}
    for kind, names in children.items():
        plural = {"Backup": "backups", "BackupVolume": "backupvolumes",
                  "BackupBackingImage": "backupbackingimages",
                  "SystemBackup": "systembackups"}[kind]
        for n in names:
            e = deleted.get((plural, n))
            assert e is not None, f"no DELETED event for {kind} {n}\n{rec.timeline()}"
            assert labels_of(e.obj).get(CR_ONLY_LABEL) == "true", \
                f"{kind} {n} went without the delete-custom-resource-only label: {brief(e.obj)}"
    # The other target and its children are untouched.
    other = [lh.get("BackupTarget", "secondary"), lh.get("BackupVolume", "bv-other-vol"),
             lh.get("Backup", "other-completed"), lh.get("BackupBackingImage", "bbi-image-other")]
    for obj in other:
        assert not obj["metadata"].get("deletionTimestamp"), brief(obj)
        assert CR_ONLY_LABEL not in labels_of(obj), brief(obj)
    assert server.running(), server.log_tail()


def test_garbage_collector_cascade_of_system_backup(backup_guard, backup_guard_factory, ns_lh):
    """A SystemBackup gets its owner reference from the mutating webhook; deleting its
    BackupTarget (annotated) makes the garbage collector delete it, and the processor releases its
    finalizer since the owner is gone: it disappears within a bound."""
    lh = ns_lh
    ns = lh.namespace
    server = start_processor(backup_guard_factory, ns)
    lh.set_flag("false")
    # No finalizer on the target: it goes at once and only the garbage collector cascades.
    target = default_target(lh, finalizer=False)
    sb = system_backup(lh, "system-backup-gc")
    refs = target_owner_refs(sb)
    assert refs == [{"apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget",
                     "name": "default", "uid": target["metadata"]["uid"]}], brief(sb)
    assert finalizers_of(sb) == [FINALIZER], brief(sb)

    lh.patch("BackupTarget", "default",
             {"metadata": {"annotations": {DELETE_TARGET_ANNOTATION: "true"}}})
    t0 = time.monotonic()
    lh.delete("BackupTarget", "default")
    poll(lambda: lh.gone("BackupTarget", "default"), timeout=10, message="the target to be gone")
    last = {}

    def sb_gone():
        obj = lh.get_or_none("SystemBackup", "system-backup-gc")
        if obj is not None:
            last["obj"] = obj
        return obj is None

    poll(sb_gone, timeout=30, message=lambda: (
        f"the SystemBackup to be garbage collected and released: {brief(last.get('obj', {}))}\n"
        f"processor log:\n{server.log_tail()}"))
    log(f"SystemBackup gone {time.monotonic() - t0:.2f}s after its BackupTarget was deleted")
    if "obj" in last:
        assert CR_ONLY_LABEL not in labels_of(last["obj"]), \
            f"expected the garbage collector's cascade, not the processor's: {brief(last['obj'])}"
    m = scrape(server)
    assert m.sum("backup_guard_finalizer_releases_total", kind="SystemBackup") == 1, \
        m.lines("backup_guard_finalizer_releases_total") + "\nprocessor log:\n" + \
        server.log_tail(40)


def test_parent_created_just_before_a_deletion_is_not_taken_as_gone(backup_guard,
                                                                   backup_guard_factory, ns_lh):
    """The processor decides from its watch caches. A BackupVolume created just before its
    Completed Backup is deleted must not look absent (a stale cache would release the Backup as
    "parent-gone" and lose the data guard). The window is widest right after a processor starts,
    so this starts a fresh processor for each try."""
    lh = ns_lh
    ns = lh.namespace
    lh.set_flag("false")
    default_target(lh)
    released = []
    tries = 10
    for i in range(tries):
        server = start_processor(backup_guard_factory, ns, lease=f"bgp-stale-{i}")
        volume_name = f"vol-{i}"
        backup_volume(lh, volume_name)
        completed_backup(lh, f"backup-{i}", volume_name)
        lh.delete("Backup", f"backup-{i}")
        time.sleep(0.5)
        if lh.gone("Backup", f"backup-{i}"):
            lines = [l for l in server.log_tail(200).splitlines() if "finalizer released" in l]
            released.append(f"try {i}: backup-{i} released while bv-{volume_name} and the "
                            f"target exist: {lines}")
        server.proc.kill()  # SIGKILL: quicker than a graceful stop; each try has its own lease
        server.stop()
        if released:
            break
    assert not released, "Completed Backups released from a stale cache:\n" + "\n".join(released)
    left = lh.names("Backup")
    assert left == [f"backup-{i}" for i in range(tries)], left
    for b in lh.list("Backup"):
        assert b["metadata"].get("deletionTimestamp") and finalizers_of(b) == [FINALIZER], brief(b)
