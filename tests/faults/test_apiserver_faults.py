"""API-server faults while the finalizer processor works through a batch.

Each case, in a namespace of its own: a `default` BackupTarget, one BackupVolume, 50 Completed
Backups whose parents exist and 200 failed Backups (state Error, empty status.backupTargetName, no
backup-volume label), all with the `longhorn.io` finalizer; all 250 are deleted (one
deletecollection) before backup-guard starts, so the processor finds the whole batch at once. Once
it has released the first failed Backups the fault is injected:

  apiserver-restart       kube-apiserver killed (SIGKILL) and started again at once with its
                          recorded command line (/proc/<pid>/cmdline)
  etcd-pause              etcd stopped (SIGSTOP) for 10 s, then SIGCONT
  apiserver-unreachable   kube-apiserver stopped (SIGSTOP) for 30 s, then SIGCONT: connections
                          are accepted by the kernel but never answered (a black hole, the harder
                          case for clients: every call runs into its timeout)

Checked for each: the processor backs off and retries (reconcile errors / workqueue retries / log);
/readyz and the metrics are sampled every 0.25 s and what they show is recorded; no Completed
Backup loses its finalizer at any time (a watch that resumes through the outage, plus a final
read); every failed Backup is gone after recovery; the server never exits.

What /readyz and the metrics must show (the server runs with --api-unready-after 20s):
  - every fault: backup_guard_kube_api_failures_total grows and backup_guard_kube_api_reachable
    reads 0 at some point during the fault;
  - the short faults (a restart of a few seconds, a 10 s etcd pause): /readyz stays 200 throughout,
    because readiness that followed every blip would take all replicas out of the Service at once;
  - the API unreachable for 30 s: /readyz turns 503 no earlier than the threshold after the fault
    began, saying "kubernetes API unreachable" and how long ago the last contact was, and answers
    200 again after SIGCONT.
"""
from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from faultlib import FAST_LEASE, FINALIZER, TARGET_URL, Kube, WatchRecorder, log, wait_until
from bgtest.procs import Loop

FAILED = 200
COMPLETED = 50
RELEASED_BEFORE_FAULT = 10  # inject once this many failed Backups were released
RECOVERY_TIMEOUT = 120  # after the fault ends, every failed Backup must be gone within this
UNREADY_AFTER = 20  # --api-unready-after, in seconds
READY_AGAIN_TIMEOUT = 30  # after the 30 s fault ends, /readyz must be 200 again within this


def populate(kube: Kube, ns: str):
    kube.ok("POST", kube.lh(ns, "backuptargets"), body={
        "apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget",
        "metadata": {"name": "default"},
        "spec": {"backupTargetURL": TARGET_URL, "credentialSecret": "", "pollInterval": "300s"}})
    # Available, as the engine reports a target it can reach: the Completed Backups' data is then
    # the engine's to delete, and the processor must keep them.
    kube.ok("PATCH", kube.lh(ns, "backuptargets", "default", "status"),
            content_type="application/merge-patch+json", body={"status": {"available": True}})
    kube.ok("POST", kube.lh(ns, "backupvolumes"), body={
        "apiVersion": "longhorn.io/v1beta2", "kind": "BackupVolume",
        "metadata": {"name": "bv-vol-1",
                     "labels": {"backup-target": "default", "backup-volume": "vol-1"}},
        "spec": {"backupTargetName": "default", "volumeName": "vol-1"}})

    def completed(i: int):
        name = f"completed-{i:03d}"
        kube.ok("POST", kube.lh(ns, "backups"), body={
            "apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
            "metadata": {"name": name, "finalizers": [FINALIZER],
                         "labels": {"backup-volume": "vol-1", "backup-target": "default"}},
            "spec": {"snapshotName": f"snap-{name}", "labels": {}, "backupMode": "incremental"}})
        kube.ok("PATCH", kube.lh(ns, "backups", name, "status"),
                content_type="application/merge-patch+json",
                body={"status": {"state": "Completed", "backupTargetName": "default",
                                 "volumeName": "vol-1", "size": "1048576",
                                 "url": f"{TARGET_URL}?backup={name}&volume=vol-1"}})

    def failed(i: int):
        name = f"failed-{i:03d}"
        kube.ok("POST", kube.lh(ns, "backups"), body={
            "apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
            "metadata": {"name": name, "finalizers": [FINALIZER],
                         "labels": {"backup-target": "default"}},
            "spec": {"snapshotName": f"snap-{name}", "labels": {}, "backupMode": "full"}})
        kube.ok("PATCH", kube.lh(ns, "backups", name, "status"),
                content_type="application/merge-patch+json",
                body={"status": {"state": "Error", "backupTargetName": "", "volumeName": "vol-1",
                                 "error": "failed to upload the backup: connection refused"}})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(completed, range(COMPLETED)))
        list(pool.map(failed, range(FAILED)))


class Sampler(Loop):
    """Samples /readyz and the processor's metrics every `interval` seconds in a thread."""

    join_timeout = 10.0

    def __init__(self, server, interval: float = 0.25):
        super().__init__()
        self.server = server
        self.interval = interval
        self.samples: list[dict] = []

    def step(self):
        s = {"t": time.monotonic()}
        try:
            s["readyz"], body = self.server.readyz_answer(timeout=1.0)
            if s["readyz"] != 200:
                s["readyz_body"] = body[:300]
        except requests.RequestException as e:
            s["readyz"] = f"error {type(e).__name__}"
        try:
            m = self.server.metrics()
            s["released"] = m.sum("backup_guard_finalizer_releases_total", kind="Backup")
            s["errors"] = m.sum("backup_guard_reconcile_total", result="error")
            s["success"] = m.sum("backup_guard_reconcile_total", result="success")
            s["retries"] = m.sum("backup_guard_workqueue_retries_total")
            s["depth"] = m.sum("backup_guard_workqueue_depth")
            s["deleting"] = m.sum("backup_guard_objects_deleting", kind="Backup")
            s["leader"] = m.sum("backup_guard_leader")
            s["api_reachable"] = m.sum("backup_guard_kube_api_reachable")
            s["api_failures"] = m.sum("backup_guard_kube_api_failures_total")
            s["api_last_contact"] = m.sum(
                "backup_guard_kube_api_last_contact_timestamp_seconds")
            s["wall"] = time.time()
        except Exception as e:  # noqa: BLE001
            s["metrics_error"] = type(e).__name__
        self.samples.append(s)

    def window(self, t0: float, t1: float) -> list[dict]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]


def summarize(samples: list[dict], base: dict | None = None) -> dict:
    """/readyz answers seen, counter deltas (from `base`, the scrape just before the fault, when
    given) and gauge ranges over a window of samples."""
    def vals(k):
        v = [s[k] for s in samples if k in s]
        return ([base[k]] + v) if base and k in base and v else v
    readyz = {}
    for s in samples:
        readyz[str(s.get("readyz"))] = readyz.get(str(s.get("readyz")), 0) + 1
    out = {"samples": len(samples), "readyz": readyz}
    for k in ("released", "errors", "retries", "api_failures"):
        v = vals(k)
        if v:
            out[f"{k}_delta"] = v[-1] - v[0]
    for k in ("depth", "deleting"):
        v = vals(k)
        if v:
            out[f"{k}_min"], out[f"{k}_max"] = min(v), max(v)
    v = vals("leader")
    if v:
        out["leader_min"] = min(v)
    v = [s["api_reachable"] for s in samples if "api_reachable" in s]
    if v:
        out["api_reachable_min"] = min(v)
    # The longest time without contact that the metrics showed (scrape time - last contact).
    gaps = [s["wall"] - s["api_last_contact"] for s in samples
            if s.get("api_last_contact") and "wall" in s]
    if gaps:
        out["api_no_contact_max_s"] = round(max(gaps), 1)
    reasons = sorted({s["readyz_body"].split(";")[0] for s in samples if "readyz_body" in s})
    if reasons:
        out["readyz_reasons"] = reasons[:3]
    return out


def readiness_timeline(samples: list[dict], t_fault: float, t_end: float) -> dict:
    """When /readyz first answered 503 after the fault began, and when it answered 200 again
    after that (relative to the fault's end), from the samples."""
    out = {}
    first_503 = next((s for s in samples if s["t"] >= t_fault and s.get("readyz") == 503), None)
    if first_503 is None:
        return out
    out["first_503_after_fault_start_s"] = round(first_503["t"] - t_fault, 1)
    out["first_503_reason"] = first_503.get("readyz_body", "")
    back = next((s for s in samples if s["t"] > first_503["t"] and s.get("readyz") == 200), None)
    if back is not None:
        out["ready_again_after_fault_end_s"] = round(back["t"] - t_end, 1)
    return out


FAULTS = ["apiserver-restart", "etcd-pause", "apiserver-unreachable"]


@pytest.mark.parametrize("fault", FAULTS)
def test_processor_survives_api_fault(fault, kube, control_plane, servers, namespace, figures):
    ns = namespace
    t_setup = time.monotonic()
    populate(kube, ns)
    kube.ok("DELETE", kube.lh(ns, "backups"), timeout=60)  # deletecollection: all 250 deleting
    items = kube.list_items(ns, "backups")
    assert len(items) == FAILED + COMPLETED and all(
        it["metadata"].get("deletionTimestamp") for it in items), "the batch is not deleting"
    completed_names = {f"completed-{i:03d}" for i in range(COMPLETED)}
    log(f"{fault}: {FAILED} failed + {COMPLETED} Completed Backups deleting in {ns} "
        f"({time.monotonic() - t_setup:.1f}s)")

    # Any Completed Backup that loses its finalizer, or goes, at any moment is a violation.
    def check(event_type, obj, source):
        name = obj.get("metadata", {}).get("name", "")
        if name not in completed_names:
            return None
        if event_type == "DELETED":
            return f"Completed Backup {name} DELETED ({source})"
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return f"Completed Backup {name} lost its finalizer ({source}, {event_type})"
        return None

    watch = WatchRecorder(kube, ns, "backups", check).start()
    server = servers("processor", kubeconfig=kube.kubeconfig, namespace=ns,
                     extra=FAST_LEASE + ["--leader-election-id", f"faults-{fault}",
                                         "--api-unready-after", f"{UNREADY_AFTER}s"])
    sampler = None
    apiserver_cmd = control_plane.cmdline("kube-apiserver")
    try:
        server.start()
        sampler = Sampler(server).start()

        def released():
            m = server.metrics()
            n = m.sum("backup_guard_finalizer_releases_total", kind="Backup")
            return n if n >= RELEASED_BEFORE_FAULT else None
        wait_until("the processor to release the first failed Backups", released, 60, 0.02)
        before = server.metrics()
        base = {"released": before.sum("backup_guard_finalizer_releases_total", kind="Backup"),
                "errors": before.sum("backup_guard_reconcile_total", result="error"),
                "retries": before.sum("backup_guard_workqueue_retries_total"),
                "api_failures": before.sum("backup_guard_kube_api_failures_total")}
        released_at_fault = before.sum("backup_guard_finalizer_releases_total", kind="Backup")
        log(f"{fault}: injecting with {released_at_fault:.0f} of {FAILED} released")

        t_fault = time.monotonic()
        if fault == "apiserver-restart":
            cmd = control_plane.kill_apiserver()
            control_plane.start_apiserver(cmd)
            outage = control_plane.wait_apiserver_ready(120)
            t_end = time.monotonic()
            fault_figures = {"apiserver_down_to_ready_s": round(outage, 1)}
        elif fault == "etcd-pause":
            control_plane.signal("etcd", signal.SIGSTOP)
            try:
                time.sleep(10)
            finally:
                control_plane.signal("etcd", signal.SIGCONT)
            t_end = time.monotonic()
            fault_figures = {"etcd_paused_s": round(t_end - t_fault, 1)}
        else:
            control_plane.signal("kube-apiserver", signal.SIGSTOP)
            try:
                time.sleep(30)
            finally:
                control_plane.signal("kube-apiserver", signal.SIGCONT)
            t_end = time.monotonic()
            fault_figures = {"apiserver_stopped_s": round(t_end - t_fault, 1)}
        log(f"{fault}: fault over after {t_end - t_fault:.1f}s")
        during = summarize(sampler.window(t_fault, t_end), base)
        released_when_fault_ended = sampler.samples[-1].get("released")

        def failed_left():
            try:
                names = [it["metadata"]["name"] for it in kube.list_items(ns, "backups")]
            except Exception:  # noqa: BLE001 - the API may still be recovering
                return None
            left = [n for n in names if n.startswith("failed-")]
            return left
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        left = None
        while time.monotonic() < deadline:
            left = failed_left()
            if left == []:
                break
            time.sleep(0.5)
        t_done = time.monotonic()
        if fault == "apiserver-unreachable":
            # Readiness returns at the first answer from the API; give the sampler time to see it.
            def ready_again():
                back = readiness_timeline(sampler.samples, t_fault, t_end)
                return "ready_again_after_fault_end_s" in back or \
                    "first_503_after_fault_start_s" not in back
            deadline = t_end + READY_AGAIN_TIMEOUT
            while time.monotonic() < deadline and not ready_again():
                time.sleep(0.25)
        after = server.metrics()
        sampler.stop()
        watch.stop()
        overall = summarize(sampler.window(t_fault, t_done), base)
        timeline = readiness_timeline(sampler.samples, t_fault, t_end)

        # Final read: every Completed Backup still there, deleting, with its finalizer.
        final = {it["metadata"]["name"]: it for it in kube.list_items(ns, "backups")}
        kept = [n for n in completed_names
                if n in final and FINALIZER in (final[n]["metadata"].get("finalizers") or [])]
        logs = server.log_records()

        def count(msg):
            return sum(1 for r in logs if r.get("msg") == msg)
        log_counts = {m: count(m) for m in (
            "watch failed", "list failed", "reconcile failed, retrying with backoff",
            "stopped being leader", "became leader", "kubernetes API unreachable",
            "release withdrawn after a fresh read", "finalizer released")}
        trouble = {
            "reconcile_errors": after.sum("backup_guard_reconcile_total", result="error")
            - before.sum("backup_guard_reconcile_total", result="error"),
            "workqueue_retries": after.sum("backup_guard_workqueue_retries_total")
            - before.sum("backup_guard_workqueue_retries_total"),
        }
        readyz_changed = any(k != "200" for k in during["readyz"])
        figures.update({
            "fault": fault, **fault_figures,
            "released_at_fault": released_at_fault,
            "released_when_fault_ended": released_when_fault_ended,
            "recovery_s_after_fault_end": round(t_done - t_end, 1),
            "failed_left": len(left) if left is not None else "unknown",
            "completed_kept_with_finalizer": len(kept),
            "releases_total": after.sum("backup_guard_finalizer_releases_total", kind="Backup"),
            "release_reasons": {lab["reason"]: v for lab, v in after.select(
                "backup_guard_finalizer_releases_total", kind="Backup")},
            "during_fault": during, "fault_to_done": overall, **trouble,
            "readyz_changed_during_fault": readyz_changed,
            "readiness": timeline,
            "log": log_counts,
            "watch": {"events": watch.events, "reconnects": watch.reconnects,
                      "relists": watch.relists, "problems": watch.problems[:5]},
            "server_running": server.running(),
        })
        log(f"{fault}: figures {figures}")

        assert released_at_fault < FAILED, "the fault was injected after the batch was done"
        assert server.running(), f"backup-guard exited during the fault:\n{server.log_tail()}"
        assert not watch.problems, f"Completed Backups released early: {watch.problems[:10]}"
        assert len(kept) == COMPLETED, (
            f"only {len(kept)} of {COMPLETED} Completed Backups kept their finalizer; missing: "
            f"{sorted(completed_names - set(kept))[:10]}")
        assert left == [], (
            f"{len(left) if left is not None else 'unknown'} failed Backups still present "
            f"{RECOVERY_TIMEOUT}s after the fault ended: {(left or [])[:10]}\n{server.log_tail()}")
        assert trouble["reconcile_errors"] > 0 or trouble["workqueue_retries"] > 0 or \
            log_counts["watch failed"] + log_counts["list failed"] > 0, (
            f"no sign of backing off and retrying: {trouble}, log {log_counts}")
        # The API-health metrics show every fault, however short.
        assert during.get("api_failures_delta", 0) > 0, (
            f"backup_guard_kube_api_failures_total did not grow during the fault: {during}")
        assert during.get("api_reachable_min") == 0, (
            f"backup_guard_kube_api_reachable never read 0 during the fault: {during}")
        if fault == "apiserver-unreachable":
            assert "first_503_after_fault_start_s" in timeline, (
                f"/readyz never answered 503 during {t_end - t_fault:.0f}s without the API: "
                f"{during['readyz']}")
            assert timeline["first_503_after_fault_start_s"] >= UNREADY_AFTER - 1, (
                f"/readyz turned 503 before --api-unready-after {UNREADY_AFTER}s: {timeline}")
            assert "kubernetes API unreachable" in timeline["first_503_reason"] and \
                "last contact" in timeline["first_503_reason"], timeline
            assert "ready_again_after_fault_end_s" in timeline, (
                f"/readyz did not answer 200 again within {READY_AGAIN_TIMEOUT}s of SIGCONT: "
                f"{timeline}, {overall['readyz']}")
        else:
            # A blip shorter than the threshold must not pull the replica out of the Service.
            assert set(overall["readyz"]) == {"200"}, (
                f"/readyz left 200 during a {t_end - t_fault:.0f}s fault: {overall['readyz']}, "
                f"{overall.get('readyz_reasons')}")
    finally:
        if sampler:
            sampler.stop()
        watch.stop()
        # Never leave the control plane stopped for the next test.
        for c in ("etcd", "kube-apiserver"):
            try:
                control_plane.signal(c, signal.SIGCONT)
            except Exception:  # noqa: BLE001
                pass
        try:
            control_plane.pid("kube-apiserver")
        except AssertionError:
            control_plane.start_apiserver(apiserver_cmd)
            control_plane.wait_apiserver_ready(120)
