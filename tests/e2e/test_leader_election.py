"""Two `backup-guard serve` replicas for one namespace and one Lease: exactly one leads and only
it releases finalizers; when it is SIGKILLed the other takes over within the lease duration plus a
few seconds and carries on."""

import time

import pytest
from kubernetes import client

from processor_support import (  # noqa: F401 - fixtures
    default_target, failed_backup, hostname, log, ns_lh, poll, proc_ns, scrape, server_args,
)

pytestmark = pytest.mark.processor

LEASE_SECONDS = 4  # processor_support.FAST_LEASE


def releases(server) -> float:
    return scrape(server).sum("backup_guard_finalizer_releases_total", kind="Backup")


def leader_flag(server):
    try:
        return scrape(server).value("backup_guard_leader")
    except Exception:  # noqa: BLE001 - a killed replica has no metrics
        return None


def test_two_replicas_one_leader_and_takeover(backup_guard, backup_guard_factory, api_client,
                                              ns_lh):
    lh = ns_lh
    ns = lh.namespace
    lease_name = f"bgp-le-{int(time.time()) % 100000}"
    args = server_args(ns, lease_name)
    a = backup_guard_factory(extra_args=args, namespace=ns)
    b = backup_guard_factory(extra_args=args, namespace=ns)
    replicas = {a.proc.pid: a, b.proc.pid: b}
    coordination = client.CoordinationV1Api(api_client)

    def holder() -> str:
        return coordination.read_namespaced_lease(lease_name, ns).spec.holder_identity or ""

    def one_leader():
        flags = {pid: leader_flag(s) for pid, s in replicas.items()}
        leaders = [pid for pid, v in flags.items() if v == 1]
        if len(leaders) == 1 and sorted(flags.values()) == [0, 1]:
            return leaders[0]
        return None

    leader_pid = poll(one_leader, timeout=20, message=lambda: (
        f"exactly one replica to report backup_guard_leader 1 "
        f"({ {pid: leader_flag(s) for pid, s in replicas.items()} });\n"
        f"A:\n{a.log_tail(20)}\nB:\n{b.log_tail(20)}"))
    leader = replicas[leader_pid]
    follower = b if leader is a else a
    # The Lease names the leader (identity "<host>_<pid>"), and the answer is stable.
    assert holder() == f"{hostname()}_{leader_pid}", holder()
    for _ in range(10):
        assert one_leader() == leader_pid
        time.sleep(0.2)
    log(f"leader pid {leader_pid}, follower pid {follower.proc.pid}, lease holder {holder()!r}")

    # Only the leader acts.
    lh.set_flag("false")
    default_target(lh)
    before_leader, before_follower = releases(leader), releases(follower)
    failed_backup(lh, "failed-1", "vol-1")
    lh.delete("Backup", "failed-1")
    poll(lambda: lh.gone("Backup", "failed-1"), timeout=10,
         message=lambda: f"the leader to release failed-1:\n{leader.log_tail()}")
    poll(lambda: releases(leader) == before_leader + 1, timeout=5,
         message=lambda: f"the leader's release counter to go up: {releases(leader)}")
    time.sleep(0.5)
    assert releases(follower) == before_follower, \
        scrape(follower).lines("backup_guard_finalizer_releases_total")

    # SIGKILL the leader: no chance to give the Lease up.
    leader.proc.kill()
    t0 = time.monotonic()
    poll(lambda: leader_flag(follower) == 1, timeout=LEASE_SECONDS + 15, interval=0.05,
         message=lambda: f"the follower to take over:\n{follower.log_tail()}")
    takeover = time.monotonic() - t0
    print(f"\nTAKEOVER: the follower leads {takeover:.2f}s after the leader was SIGKILLed "
          f"(lease duration {LEASE_SECONDS}s)")
    assert takeover < LEASE_SECONDS + 10, f"takeover took {takeover:.2f}s"
    poll(lambda: holder() == f"{hostname()}_{follower.proc.pid}", timeout=5,
         message=lambda: f"the Lease to name the new leader (holder {holder()!r})")
    leader.stop()

    # The new leader releases a newly deleted failed Backup.
    before = releases(follower)
    failed_backup(lh, "failed-2", "vol-1")
    t1 = time.monotonic()
    lh.delete("Backup", "failed-2")
    poll(lambda: lh.gone("Backup", "failed-2"), timeout=10,
         message=lambda: f"the new leader to release failed-2:\n{follower.log_tail()}")
    log(f"new leader released failed-2 in {time.monotonic() - t1:.2f}s")
    poll(lambda: releases(follower) == before + 1, timeout=5,
         message=lambda: scrape(follower).lines("backup_guard_finalizer_releases_total"))
