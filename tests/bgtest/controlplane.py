"""The local control plane that tests/e2e/controlplane.sh starts (state dir: pids, logs, pki)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bgtest.ports import port_bindable
from bgtest.wait import wait_until


def state_dir() -> Path:
    """$BG_STATE_DIR, controlplane.sh's default state dir otherwise."""
    return Path(os.environ.get("BG_STATE_DIR") or "/tmp/backup-guard-cp")


def pid_runs(pid: int, program: str) -> bool:
    """The pid exists, is not a zombie and still runs `program` (guards against pid reuse)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return program.encode() in f.read()
    except OSError:
        return False


def proc_status(pid: int) -> dict:
    """VmRSS (KiB), VmHWM (KiB), Threads and fds of a running process; {} when it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
                elif key == "Threads":
                    out[key] = int(value)
    except OSError:
        return {}
    try:
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


class ControlPlane:
    """Signals, kills and restarts the plane's processes (pid files under <state>/pids)."""

    def __init__(self, state, kube, log=print):
        self.state = Path(state)
        self.kube = kube
        self.log = log

    def pid(self, component: str) -> int:
        pid = int((self.state / "pids" / component).read_text().strip())
        if not pid_runs(pid, component):
            raise AssertionError(f"{component} (pid {pid}) is not running")
        return pid

    def cmdline(self, component: str) -> list[str]:
        raw = Path(f"/proc/{self.pid(component)}/cmdline").read_bytes()
        return [a.decode() for a in raw.split(b"\0") if a]

    def signal(self, component: str, sig: int):
        os.kill(self.pid(component), sig)

    def kill_apiserver(self) -> list[str]:
        """SIGKILL kube-apiserver; returns its command line for start_apiserver()."""
        cmd = self.cmdline("kube-apiserver")
        pid = self.pid("kube-apiserver")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_runs(pid, "kube-apiserver"), 10, 0.05, "kube-apiserver to exit")
        # The kernel releases the address space (cmdline reads empty) before the descriptors, so
        # the listening socket can outlive the check above for a moment; wait until the port can
        # be bound again, or the restart fails with "address already in use".
        port = next(int(a.split("=", 1)[1]) for a in cmd if a.startswith("--secure-port="))
        wait_until(lambda: port_bindable(port), 10, 0.05,
                   f"kube-apiserver's port {port} to be released")
        return cmd

    def start_apiserver(self, cmd: list[str]) -> int:
        """Starts kube-apiserver again with the same command line, log appended to its log; the
        pid file is updated so `controlplane.sh down` stops the new process."""
        logf = open(self.state / "logs" / "kube-apiserver.log", "ab")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        (self.state / "pids" / "kube-apiserver").write_text(f"{proc.pid}\n")
        self.log(f"kube-apiserver started again (pid {proc.pid})")
        return proc.pid

    def wait_apiserver_ready(self, timeout: float = 90) -> float:
        t0 = time.monotonic()
        wait_until(self.kube.ready, timeout, 0.2, "kube-apiserver /readyz")
        return time.monotonic() - t0

    def pki(self) -> Path:
        return self.state / "pki"
