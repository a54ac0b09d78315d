"""`backup-guard uninstall` on a machine whose clock is ahead of the API server's (issue 14,
suspect 10).

The fast clock is real, not simulated inside backup-guard: Debian's libfaketime, preloaded into the
uninstall process alone (LD_PRELOAD), moves every wall-clock reading of that process (time(),
gettimeofday(), clock_gettime(CLOCK_REALTIME)) 90 s ahead, and leaves its monotonic clock alone
(FAKETIME_DONT_FAKE_MONOTONIC=1). The API server, which writes deletionTimestamp, runs on the
machine's true clock.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from bg_e2e import FINALIZER
from processor_support import (  # noqa: F401 - fixtures
    WatchRecorder, finalizers_of, log, ns_lh, parse_time, proc_ns, uninstall_cmd, volume,
)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
AHEAD_S = 90


def fast_clock_env() -> dict:
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} is missing: tools/ensure-deps.sh installs libfaketime")
    return dict(os.environ, LD_PRELOAD=str(LIBFAKETIME), FAKETIME=f"+{AHEAD_S}",
                FAKETIME_DONT_FAKE_MONOTONIC="1")


def test_a_fast_local_clock_does_not_shorten_the_uninstall_grace(backup_guard, kubeconfig,
                                                                 ns_lh):
    """A Volume with the engine's finalizer is held by nothing but the uninstall grace. Run with
    a clock 90 s fast, the uninstall must still release it only once the grace has passed on the
    API server's clock (before the fix: at once, its deletion looking 90 s old)."""
    lh = ns_lh
    env = fast_clock_env()
    # The preload works here: a process under it reads the wall clock AHEAD_S ahead.
    seen = float(subprocess.run(["python3", "-c", "import time; print(time.time())"], env=env,
                                capture_output=True, text=True, check=True).stdout)
    assert seen - time.time() > AHEAD_S - 5, f"libfaketime moved the clock by {seen - time.time()}"

    vol = volume(lh, "vol-fast-clock", standby=False)
    assert finalizers_of(vol) == [FINALIZER], vol
    lh.set_flag("true")
    grace = 10
    rec = WatchRecorder(kubeconfig, lh.namespace, ["volumes"]).start()
    try:
        cmd = uninstall_cmd(kubeconfig, lh.namespace, "--release-grace", f"{grace}s",
                            "--timeout", "120s", "--log-level", "info")
        t = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150,
                              stdin=subprocess.DEVNULL)
        log(f"uninstall with a clock {AHEAD_S}s fast exited {proc.returncode} after "
            f"{time.monotonic() - t:.1f}s; stdout:\n{proc.stdout}stderr:\n{proc.stderr}")
    finally:
        rec.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The uninstall itself ran on the fast clock (its log lines' timestamps).
    stamps = [json.loads(line)["ts"] for line in proc.stderr.splitlines()
              if line.startswith("{") and '"ts"' in line]
    for ts in stamps:
        assert parse_time(ts[:19] + "Z") - time.time() > AHEAD_S - 60, \
            f"a log line of the uninstall is not on the fast clock: {ts}"
    [gone] = rec.deleted("volumes") or [None]
    assert gone is not None, f"no DELETED event for the Volume: {rec.snapshot()}"
    deleted_at = parse_time(gone.obj["metadata"]["deletionTimestamp"])
    held = gone.wall - deleted_at
    log(f"the Volume was released {held:.1f}s after its deletionTimestamp (grace {grace}s)")
    # deletionTimestamp is truncated to the second: 1 s of slack, as check_release_order allows.
    assert held >= grace - 1, \
        f"released {held:.1f}s after its deletion, before the {grace}s grace had passed"
