"""Helpers for the fault-injection tests (tests/faults).

Everything talks to 127.0.0.1 only. The API server is reached with the admin client certificate
from the control plane's kubeconfig (plain `requests`, one session per thread) or with the official
`kubernetes` client; backup-guard through its TLS port (verified against the test CA) and its plain
metrics port.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgtest import kube as _kube  # noqa: E402
from bgtest.controlplane import ControlPlane as _ControlPlane  # noqa: E402
from bgtest.controlplane import pid_runs, proc_status  # noqa: E402,F401 - re-exported
from bgtest.metrics import Metrics, scrape  # noqa: E402,F401 - re-exported
from bgtest.ports import free_ports, port_bindable  # noqa: E402,F401 - re-exported
from bgtest.server import BackupGuard as _BackupGuard  # noqa: E402
from bgtest.server import serve_args  # noqa: E402
from bgtest.wait import wait_until as _wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GROUP_PATH = "/apis/longhorn.io/v1beta2"
FINALIZER = "longhorn.io"
MUTATOR_NAME = "mutator.backup-guard.longhorn.io"
VALIDATOR_NAME = "validator.backup-guard.longhorn.io"
TARGET_URL = "s3://backupbucket@us-east-1/backupstore"
FAST_LEASE = ["--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s",
              "--leader-election-retry-period", "1s"]


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2):
    """Polls predicate() until it returns something truthy (returned); AssertionError on timeout."""
    return _wait_until(predicate, timeout, interval, what)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


class Kube(_kube.Kube):
    """The raw API client (bgtest.kube.Kube) with the fault tests' request timeout of 15 s."""

    def __init__(self, kubeconfig: str, timeout: float = 15):
        super().__init__(kubeconfig, timeout)


# --------------------------------------------------------------------------------------------
# backup-guard processes


class PidBook:
    """Records the pid of every process a test starts (`<dir>/<name>.pid`: "pid program"), so the
    runner can stop leftovers when pytest itself is killed."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, pid: int, program: str):
        (self.dir / f"{name}.pid").write_text(f"{pid} {program}\n")

    def remove(self, name: str):
        try:
            (self.dir / f"{name}.pid").unlink()
        except FileNotFoundError:
            pass


class BackupGuard(_BackupGuard):
    """One `backup-guard serve` process (file-mode certificates, own ports); each start logs to
    <log_dir>/<name>.<generation>.log and records its pid in the PidBook."""

    def __init__(self, binary: str, cert_dir: Path, log_dir: Path, pids: PidBook, name: str,
                 kubeconfig: str | None = None, namespace: str = "faults", extra=(),
                 port: int | None = None, metrics_port: int | None = None):
        self.cert_dir = Path(cert_dir)
        self.log_dir = Path(log_dir)
        self.pids = pids
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.extra = list(extra)
        self.generation = 0
        super().__init__(binary, name, None,
                         serve_args(cert_dir, None, namespace) + serve_args(None, kubeconfig)
                         + self.extra, port, metrics_port, ca_file=self.cert_dir / "ca.crt",
                         on_start=self._started, on_stop=lambda s: s.pids.remove(s.name))

    @property
    def metrics_url(self) -> str:
        return self.metrics_base + "/metrics"

    @property
    def ca_file(self) -> str:
        return self.ca

    def _started(self, _):
        self.pids.add(self.name, self.proc.pid, "backup-guard")
        log(f"started {self.name} (pid {self.proc.pid}, {self.url}, log {self.log_path})")

    def start(self, wait: bool = True, timeout: float = 30) -> "BackupGuard":
        assert not self.running(), f"{self.name} already runs"
        self.generation += 1
        self.log_path = self.log_dir / f"{self.name}.{self.generation}.log"
        super().start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30):
        super().wait_ready(timeout, 0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Sends `sig` and waits for the exit (KILL after `timeout`). Returns the exit status."""
        return super().stop(sig, timeout, 10)

    def log_tail(self, lines: int = 40) -> str:
        return super().log_tail(lines)

    def metrics(self) -> Metrics:
        return scrape(self.metrics_url, 3.0)


# --------------------------------------------------------------------------------------------
# The control plane started by controlplane.sh (pids under $BG_STATE_DIR/pids)


class ControlPlane(_ControlPlane):
    def __init__(self, state_dir: str, kube: Kube):
        super().__init__(state_dir, kube, log)


# --------------------------------------------------------------------------------------------
# A watch that survives API outages (resumes from the last resourceVersion, relists on 410)


class WatchRecorder:
    """Watches one plural in a namespace through every outage and calls `check(event_type, obj,
    source)` for every event and, after a relist, for every listed object (source "list").
    Counts reconnects; `problems` collects what `check` returns (a string means a violation)."""

    def __init__(self, kube: Kube, ns: str, plural: str, check):
        self.kube, self.ns, self.plural, self.check = kube, ns, plural, check
        self.stop_event = threading.Event()
        self.problems: list[str] = []
        self.events = 0
        self.reconnects = 0
        self.relists = 0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name=f"watch-{plural}", daemon=True)
        self.rv = ""

    def start(self) -> "WatchRecorder":
        self._relist()
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)

    def _note(self, event_type: str, obj: dict, source: str):
        try:
            p = self.check(event_type, obj, source)
        except Exception as e:  # noqa: BLE001
            p = f"check raised {e!r}"
        if p:
            self.problems.append(p)

    def _relist(self):
        body = self.kube.ok("GET", self.kube.lh(self.ns, self.plural), timeout=15)
        for it in body.get("items", []):
            self._note("LISTED", it, "list")
        self.rv = body["metadata"]["resourceVersion"]
        self.relists += 1

    def _run(self):
        first = True
        while not self.stop_event.is_set():
            if not first:
                self.reconnects += 1
            first = False
            try:
                if not self.rv:
                    self._relist()
                r = self.kube.request(
                    "GET", self.kube.lh(self.ns, self.plural),
                    params={"watch": "1", "resourceVersion": self.rv,
                            "allowWatchBookmarks": "true", "timeoutSeconds": "30"},
                    timeout=(3, 12), stream=True)
                if r.status_code == 410:
                    self.rv = ""
                    continue
                if r.status_code != 200:
                    self.errors.append(f"watch HTTP {r.status_code}")
                    r.close()
                    self.stop_event.wait(0.5)
                    continue
                for line in r.iter_lines():
                    if self.stop_event.is_set():
                        break
                    if not line:
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            self.rv = ""
                        else:
                            self.errors.append(f"watch ERROR event {obj}")
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.rv = rv
                    if ev.get("type") == "BOOKMARK":
                        continue
                    self.events += 1
                    self._note(ev["type"], obj, "watch")
                r.close()
            except Exception as e:  # noqa: BLE001 - outages are expected; resume
                self.errors.append(type(e).__name__)
                self.stop_event.wait(0.5)
