"""Helpers for the fault-injection tests (tests/faults).

Everything talks to 127.0.0.1 only. The API server is reached with the admin client certificate
from the control plane's kubeconfig (plain `requests`, one session per thread) or with the official
`kubernetes` client; backup-guard through its TLS port (verified against the test CA) and its plain
metrics port.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests
import yaml

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


def free_ports(n: int) -> list[int]:
    """Free ports below the ephemeral range, so that one reused across a restart is not taken by
    an outgoing connection in between."""
    socks = []
    try:
        while len(socks) < n:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", random.randint(20000, 32000)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2):
    """Polls predicate() until it returns something truthy (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_error = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last_error!r})" if last_error else ""))
        time.sleep(interval)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# --------------------------------------------------------------------------------------------
# /proc


def proc_status(pid: int) -> dict:
    """VmRSS (KiB), VmHWM (KiB) and Threads of a running process; {} when it is gone."""
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


def port_bindable(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:port now (SO_REUSEADDR, as Go's listeners)."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


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


# --------------------------------------------------------------------------------------------
# Prometheus text format

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, samples: list[tuple[str, dict, float]]):
        self.samples = samples

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = dict(_LABEL.findall(m.group(3) or ""))
            try:
                value = float(m.group(4))
            except ValueError:
                continue
            samples.append((m.group(1), labels, value))
        return cls(samples)

    def select(self, metric: str, /, **labels) -> list[tuple[dict, float]]:
        out = []
        for n, lab, v in self.samples:
            if n != metric:
                continue
            ok = True
            for k, want in labels.items():
                got = lab.get(k)
                if callable(want):
                    ok = want(got)
                elif isinstance(want, re.Pattern):
                    ok = got is not None and want.fullmatch(got) is not None
                else:
                    ok = got == want
                if not ok:
                    break
            if ok:
                out.append((lab, v))
        return out

    def sum(self, metric: str, /, **labels) -> float:
        return sum(v for _, v in self.select(metric, **labels))

    def value(self, metric: str, /, **labels):
        got = self.select(metric, **labels)
        return got[0][1] if got else None


def scrape(url: str, timeout: float = 3.0) -> Metrics:
    s = requests.Session()
    s.trust_env = False
    r = s.get(url, timeout=timeout)
    r.raise_for_status()
    return Metrics.parse(r.text)


# --------------------------------------------------------------------------------------------
# The API server through requests (admin client certificate)


class Kube:
    def __init__(self, kubeconfig: str):
        with open(kubeconfig) as f:
            cfg = yaml.safe_load(f)
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.kubeconfig = kubeconfig
        self.server = cluster["server"].rstrip("/")
        self.ca = cluster["certificate-authority"]
        self.cert = (user["client-certificate"], user["client-key"])
        self._local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False
            s.verify = self.ca
            s.cert = self.cert
            self._local.session = s
        return s

    def request(self, method: str, path: str, *, body=None, params=None,
                content_type: str = "application/json", timeout: float = 15,
                stream: bool = False) -> requests.Response:
        headers = {"Accept": "application/json"}
        kw = {}
        if body is not None:
            headers["Content-Type"] = content_type
            kw["data"] = json.dumps(body)
        return self.session().request(method, self.server + path, params=params, headers=headers,
                                      timeout=timeout, stream=stream, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.request(method, path, **kw)
        if r.status_code >= 300:
            raise AssertionError(f"{method} {path}: HTTP {r.status_code}: {r.text[:400]}")
        return r.json() if r.content else {}

    @staticmethod
    def lh(ns: str, plural: str, name: str = "", sub: str = "") -> str:
        p = f"{GROUP_PATH}/namespaces/{ns}/{plural}"
        if name:
            p += f"/{name}"
        if sub:
            p += f"/{sub}"
        return p

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> Metrics:
        r = self.request("GET", "/metrics", timeout=30)
        r.raise_for_status()
        return Metrics.parse(r.text)

    def ensure_namespace(self, ns: str):
        r = self.request("POST", "/api/v1/namespaces",
                         body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        if r.status_code not in (201, 409):
            raise AssertionError(f"creating namespace {ns}: HTTP {r.status_code}: {r.text[:300]}")

    def delete_namespace(self, ns: str):
        self.request("DELETE", f"/api/v1/namespaces/{ns}")

    def list_items(self, ns: str, plural: str) -> list[dict]:
        return self.ok("GET", self.lh(ns, plural), timeout=30).get("items", [])

    def purge(self, ns: str, plurals=("backups", "systembackups", "backupvolumes",
                                      "backuptargets", "settings"), timeout: float = 60):
        """Deletes every object of these kinds in ns (finalizers removed after the delete), waits
        until they are gone, then deletes the namespace. Best effort, returns problems."""
        problems = []
        deadline = time.monotonic() + timeout
        for plural in plurals:
            try:
                self.request("DELETE", self.lh(ns, plural), timeout=60)  # deletecollection
                while time.monotonic() < deadline:
                    items = self.list_items(ns, plural)
                    if not items:
                        break
                    for it in items:
                        if it["metadata"].get("finalizers"):
                            self.request("PATCH", self.lh(ns, plural, it["metadata"]["name"]),
                                         body={"metadata": {"finalizers": None}},
                                         content_type="application/merge-patch+json")
                    time.sleep(0.3)
                else:
                    problems.append(f"{plural} still present in {ns}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"{plural} in {ns}: {e!r}")
        try:
            self.delete_namespace(ns)
        except Exception as e:  # noqa: BLE001
            problems.append(f"namespace {ns}: {e!r}")
        return problems


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


class BackupGuard:
    """One `backup-guard serve` process (file-mode certificates, own ports)."""

    _seq = 0

    def __init__(self, binary: str, cert_dir: Path, log_dir: Path, pids: PidBook, name: str,
                 kubeconfig: str | None = None, namespace: str = "faults", extra=(),
                 port: int | None = None, metrics_port: int | None = None):
        self.binary = binary
        self.cert_dir = Path(cert_dir)
        self.log_dir = Path(log_dir)
        self.pids = pids
        self.name = name
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.extra = list(extra)
        if port is None or metrics_port is None:
            port, metrics_port = free_ports(2)
        self.port, self.metrics_port = port, metrics_port
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def ca_file(self) -> str:
        return str(self.cert_dir / "ca.crt")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        cmd = [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
               "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
               "--tls-cert-file", str(self.cert_dir / "tls.crt"),
               "--tls-key-file", str(self.cert_dir / "tls.key"),
               "--namespace", self.namespace]
        if self.kubeconfig:
            cmd += ["--kubeconfig", self.kubeconfig]
        return cmd + self.extra

    def start(self, wait: bool = True, timeout: float = 30) -> "BackupGuard":
        assert not self.running(), f"{self.name} already runs"
        self.generation += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}.{self.generation}.log"
        out = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        finally:
            out.close()
        self.pids.add(self.name, self.proc.pid, "backup-guard")
        log(f"started {self.name} (pid {self.proc.pid}, {self.url}, log {self.log_path})")
        if wait:
            self.wait_ready(timeout)
        return self

    def readyz(self, timeout: float = 2.0) -> int:
        return self.readyz_answer(timeout)[0]

    def readyz_answer(self, timeout: float = 2.0) -> tuple[int, str]:
        """/readyz's status code and body (the reason, when not ready)."""
        s = requests.Session()
        s.trust_env = False
        r = s.get(self.url + "/readyz", verify=self.ca_file, timeout=timeout)
        return r.status_code, r.text

    def wait_ready(self, timeout: float = 30):
        def ready():
            if not self.running():
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            return self.readyz() == 200
        wait_until(f"{self.name} /readyz 200", ready, timeout, 0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int):
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Sends `sig` and waits for the exit (KILL after `timeout`). Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.proc.pid}) did not exit within {timeout}s; KILL")
                self.proc.kill()
                self.proc.wait(10)
        self.pids.remove(self.name)
        return self.proc.returncode

    def metrics(self) -> Metrics:
        return scrape(self.metrics_url)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_records(self) -> list[dict]:
        out = []
        for line in self.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


# --------------------------------------------------------------------------------------------
# The control plane started by controlplane.sh (pids under $BG_STATE_DIR/pids)


class ControlPlane:
    def __init__(self, state_dir: str, kube: Kube):
        self.state = Path(state_dir)
        self.kube = kube

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
        wait_until("kube-apiserver to exit", lambda: not pid_runs(pid, "kube-apiserver"), 10, 0.05)
        # The kernel releases the address space (cmdline reads empty) before the descriptors, so
        # the listening socket can outlive the check above for a moment; wait until the port can
        # be bound again, or the restart fails with "address already in use".
        port = next(int(a.split("=", 1)[1]) for a in cmd if a.startswith("--secure-port="))
        wait_until(f"kube-apiserver's port {port} to be released", lambda: port_bindable(port),
                   10, 0.05)
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
        log(f"kube-apiserver started again (pid {proc.pid})")
        return proc.pid

    def wait_apiserver_ready(self, timeout: float = 90) -> float:
        t0 = time.monotonic()
        wait_until("kube-apiserver /readyz", self.kube.ready, timeout, 0.2)
        return time.monotonic() - t0


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
