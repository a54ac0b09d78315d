"""`backup-guard uninstall` end to end: docs/CONTRACT.md's two acceptance scenarios (fresh install and
upgrade) and an uninstall that is SIGKILLed twice and restarted.

Each test works in a namespace of its own; the processors it starts serve only that namespace.
"""

import time

import pytest

from bg_e2e import FINALIZER, GROUP, VERSION
from processor_support import (  # noqa: F401 - fixtures
    CR_ONLY_LABEL, DELETE_TARGET_ANNOTATION, UNINSTALL_KINDS, WatchRecorder, WebhooksAbsent,
    brief, check_release_order, finalizers_of, found_lines, log, ns_lh, poll, populate,
    proc_ns, run_uninstall, start_processor, target_owner_refs, uninstaller,
)

WATCHED = ["volumes", "backuptargets", "backupvolumes", "backups", "systembackups",
           "backupbackingimages"]


def expected_owner_ref(uid: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupTarget", "name": "default",
            "uid": uid}


def assert_untouched(lh, sc, message: str):
    """Every scenario object is still there, none is being deleted, the target keeps its URL."""
    counts = lh.counts()
    assert counts == {"Volume": 3, "BackupTarget": 1, "BackupVolume": 3,
                      "Backup": len(sc.backups), "SystemBackup": 3, "BackupBackingImage": 2}, \
        f"{message}: {counts}"
    deleting = [brief(o) for k in UNINSTALL_KINDS for o in lh.list(k)
                if o["metadata"].get("deletionTimestamp")]
    assert not deleting, f"{message}: objects are being deleted: {deleting}"
    target = lh.get("BackupTarget", "default")
    assert target["spec"]["backupTargetURL"], f"{message}: the target URL was emptied"
    assert DELETE_TARGET_ANNOTATION not in (target["metadata"].get("annotations") or {})


def assert_uninstalled(lh, proc, server=None):
    out = proc.stdout + proc.stderr
    tail = f"\nprocessor log:\n{server.log_tail(40)}" if server else ""
    assert proc.returncode == 0, f"uninstall exited {proc.returncode}:\n{out}\n" \
        f"left: {lh.leftovers()}{tail}"
    found = found_lines(proc.stdout)
    assert found, f"no 'found N <Kind> remaining' line:\n{proc.stdout}"
    missing = [k for k in UNINSTALL_KINDS if k not in {kind for _, kind in found}]
    assert not missing, f"no 'found N <Kind> remaining' line for {missing}:\n{proc.stdout}"
    assert any(n > 0 for n, _ in found), f"every 'found' line says 0:\n{proc.stdout}"
    left = lh.leftovers()
    assert not left, f"uninstall exited 0 but objects remain (stuck finalizers?): {left}"


@pytest.mark.acceptance
def test_fresh_install_uninstall_completes(backup_guard, backup_guard_factory, kubeconfig, ns_lh):
    """SPEC "Fresh install": objects created with the webhook and the processor running; the
    flag set; `uninstall --force` leaves nothing, and no finalizer is stuck."""
    lh = ns_lh
    ns = lh.namespace
    server = start_processor(backup_guard_factory, ns)
    t = time.monotonic()
    sc = populate(lh, webhook=True)
    log(f"created {sc.total()} objects in {time.monotonic() - t:.1f}s")

    # The mutating webhook gave every SystemBackup its finalizer and owner reference.
    for name in sc.system_backups:
        sb = lh.get("SystemBackup", name)
        assert finalizers_of(sb) == [FINALIZER], brief(sb)
        assert target_owner_refs(sb) == [expected_owner_ref(sc.target_uid)], brief(sb)

    # Not confirmed: exit 2 and nothing changes.
    proc = run_uninstall(kubeconfig, ns, "--force", "--timeout", "60s")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_untouched(lh, sc, "after an unconfirmed uninstall")

    lh.set_flag("true")
    # A dry run shows the plan and changes nothing.
    proc = run_uninstall(kubeconfig, ns, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_untouched(lh, sc, "after a dry run")

    t = time.monotonic()
    proc = run_uninstall(kubeconfig, ns, "--force", "--timeout", "120s")
    log(f"uninstall --force took {time.monotonic() - t:.1f}s")
    assert_uninstalled(lh, proc, server)
    assert lh.get("Setting", "deleting-confirmation-flag")["value"] == "true"
    assert server.running(), f"the processor died:\n{server.log_tail()}"


@pytest.mark.acceptance
@pytest.mark.disruptive
def test_upgrade_owner_references_then_uninstall(api_client, custom_objects, backup_guard,
                                                 backup_guard_factory, kubeconfig, ns_lh):
    """SPEC "Upgrade": the objects are created while no backup-guard webhook is registered (so
    the SystemBackups have no owner reference); once backup-guard runs, every SystemBackup gets its
    owner reference without being touched; then the uninstall completes, in the rules' order."""
    lh = ns_lh
    ns = lh.namespace
    with WebhooksAbsent(api_client, custom_objects, ns):
        sc = populate(lh, webhook=False)
    for name in sc.system_backups:
        sb = lh.get("SystemBackup", name)
        assert not sb["metadata"].get("ownerReferences"), f"made as by an old release: {brief(sb)}"
    before = {n: lh.get("SystemBackup", n)["metadata"]["resourceVersion"]
              for n in sc.system_backups}

    t = time.monotonic()
    server = start_processor(backup_guard_factory, ns)

    def all_owned():
        sbs = [lh.get("SystemBackup", n) for n in sc.system_backups]
        return sbs if all(target_owner_refs(sb) for sb in sbs) else None

    sbs = poll(all_owned, timeout=30, message=lambda: (
        "every SystemBackup to get its BackupTarget owner reference: "
        f"{[brief(lh.get('SystemBackup', n)) for n in sc.system_backups]}\n"
        f"processor log:\n{server.log_tail()}"))
    log(f"owner references added {time.monotonic() - t:.1f}s after the processor started")
    for sb in sbs:
        assert target_owner_refs(sb) == [expected_owner_ref(sc.target_uid)], brief(sb)
        assert sb["metadata"]["resourceVersion"] != before[sb["metadata"]["name"]]
        assert finalizers_of(sb) == [FINALIZER], brief(sb)
        assert not sb["metadata"].get("deletionTimestamp"), brief(sb)
    assert_untouched(lh, sc, "after the owner references were added")

    rec = WatchRecorder(kubeconfig, ns, WATCHED).start()
    try:
        lh.set_flag("true")
        t = time.monotonic()
        proc = run_uninstall(kubeconfig, ns, "--release-grace", "5s", "--timeout", "120s")
        log(f"uninstall --release-grace 5s took {time.monotonic() - t:.1f}s")
    finally:
        rec.stop()
    assert_uninstalled(lh, proc, server)
    check_release_order(rec, release_grace=5)


def test_uninstall_survives_two_sigkills(backup_guard, kubeconfig, ns_lh, uninstaller):
    """The uninstall is SIGKILLed after its first "found" line and again once objects started to
    go; the third run completes. No processor runs in this namespace, so the uninstall applies the
    release rules alone, and the recorded watch shows nothing released before the rules allow:
    the default BackupTarget goes only after all of its children."""
    lh = ns_lh
    ns = lh.namespace
    sc = populate(lh, webhook=True)
    rec = WatchRecorder(kubeconfig, ns, WATCHED).start()
    grace = 10
    args = ("--release-grace", f"{grace}s", "--timeout", "120s")
    try:
        lh.set_flag("true")
        t0 = time.monotonic()

        first = uninstaller(ns, *args)
        line = first.wait_line(r"found \d+ \w+ remaining", timeout=30)
        rc = first.kill()
        log(f"kill 1 after {time.monotonic() - t0:.1f}s, at {line!r}: exit {rc}; "
            f"left {lh.counts()}")
        assert rc == -9, f"the first uninstall had already exited ({rc}):\n{first.stdout()}"

        second = uninstaller(ns, *args)
        gone = rec.wait_for(
            lambda e: e.type == "DELETED" and e.plural in ("backups", "backupvolumes",
                                                         "systembackups", "backupbackingimages"),
            timeout=60, message="a first Backup, BackupVolume, SystemBackup or "
                                "BackupBackingImage to be gone")
        rc = second.kill()
        log(f"kill 2 after {time.monotonic() - t0:.1f}s, once {gone.plural}/{gone.name} was gone:"
            f" exit {rc}; left {lh.counts()}")
        assert rc == -9, f"the second uninstall had already exited ({rc}):\n{second.stdout()}"
        assert lh.get_or_none("BackupTarget", "default") is not None or \
            not any(lh.counts()[k] for k in ("BackupVolume", "Backup", "SystemBackup",
                                             "BackupBackingImage")), \
            "the target is gone while children remain: " + str(lh.leftovers())

        third = uninstaller(ns, *args)
        rc = third.wait(150)
        log(f"third uninstall exited {rc} after {time.monotonic() - t0:.1f}s in total; stdout:\n"
            f"{third.stdout()}")
    finally:
        rec.stop()

    assert rc == 0, f"the restarted uninstall failed ({rc}):\nstdout:\n{third.stdout()}\n" \
        f"stderr:\n{third.stderr()}\nleft: {lh.leftovers()}"
    assert found_lines(third.stdout()), third.stdout()
    assert not lh.leftovers(), lh.leftovers()
    assert not rec.errors or all("Timeout" in e or "timed out" in e for e in rec.errors), \
        rec.errors
    # Every scenario object was seen going away.
    seen = {(e.plural, e.name) for e in rec.deleted()}
    expected = ({("volumes", n) for n in sc.volumes} | {("backuptargets", "default")}
                | {("backupvolumes", n) for n in sc.backup_volumes}
                | {("backups", n) for n in sc.backups}
                | {("systembackups", n) for n in sc.system_backups}
                | {("backupbackingimages", n) for n in sc.backing_images})
    assert expected <= seen, f"no DELETED event for {sorted(expected - seen)}"
    check_release_order(rec, release_grace=grace)
    # The uninstall labelled the target's children before deleting them.
    unlabelled = [f"{e.plural}/{e.name}" for e in rec.deleted()
                  if e.plural in ("backupvolumes", "backupbackingimages", "systembackups")
                  and (e.obj["metadata"].get("labels") or {}).get(CR_ONLY_LABEL) != "true"]
    assert not unlabelled, f"children deleted without the delete-custom-resource-only label: " \
        f"{unlabelled}"
