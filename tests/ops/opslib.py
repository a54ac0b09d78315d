"""Helpers for the operations tests (certificate rotation, file reload, Prometheus).

Everything talks to 127.0.0.1 only: the API server through its admin client certificate (plain
`requests`, one session per thread), backup-guard's TLS port for the served certificate, and
backup-guard's / Prometheus' plain HTTP ports.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgtest.kube import Kube  # noqa: E402,F401 - re-exported
from bgtest.metrics import Metrics, scrape_text  # noqa: E402,F401 - re-exported
from bgtest.ports import free_ports  # noqa: E402,F401 - re-exported
from bgtest.procs import Process, without_proxy  # noqa: E402,F401 - re-exported
from bgtest.server import BackupGuard as _BackupGuard  # noqa: E402
from bgtest.wait import wait_until as _wait_until  # noqa: E402

GROUP_PATH = "/apis/longhorn.io/v1beta2"
MUTATING = "backup-guard-mutating"
VALIDATING = "backup-guard-validating"
MUTATOR_NAME = "mutator.backup-guard.longhorn.io"
VALIDATOR_NAME = "validator.backup-guard.longhorn.io"
WEBHOOK_NAMES = (MUTATOR_NAME, VALIDATOR_NAME)
FINALIZER = "longhorn.io"


# --------------------------------------------------------------------------------------------
# small utilities


def wait_until(what: str, predicate, timeout: float, interval: float = 0.2):
    """Polls predicate() until it returns something truthy; raises AssertionError on timeout."""
    return _wait_until(predicate, timeout, interval, what)


def pem_certificates(pem: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)


def pem_fingerprint(pem: str) -> str:
    """SHA-256 of the first certificate of a PEM text (DER bytes), short hex."""
    certs = pem_certificates(pem)
    if not certs:
        return ""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(certs[0])).hexdigest()[:16]


def der_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16]


def cert_not_after(pem: str) -> int:
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pem, text=True,
                         capture_output=True, check=True).stdout
    stamp = out.strip().split("=", 1)[1]
    return int(ssl.cert_time_to_seconds(stamp))


def scrape(url: str) -> str:
    return scrape_text(url)


# --------------------------------------------------------------------------------------------
# served certificate


@dataclass
class Served:
    fingerprint: str
    pem: str
    verified: bool
    error: str = ""


def served_certificate(port: int, ca_pem: str | None = None, timeout: float = 5) -> Served:
    """Handshakes with 127.0.0.1:port. With ca_pem, verifies the chain and the IP SAN 127.0.0.1
    exactly as the API server does for a url-mode webhook (https://127.0.0.1:port)."""
    der = None
    verified = False
    error = ""
    if ca_pem:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=ca_pem)
        ctx.check_hostname = True
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                    der = tls.getpeercert(binary_form=True)
                    verified = True
        except ssl.SSLCertVerificationError as e:
            error = f"{e.verify_message} ({e.reason})"
    if der is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                der = tls.getpeercert(binary_form=True)
    return Served(der_fingerprint(der), ssl.DER_cert_to_PEM_cert(der), verified, error)


# --------------------------------------------------------------------------------------------
# processes


def _record_pid(p: Process):
    """Records the pid under $OPS_STATE_DIR/pids, so the runner stops leftovers."""
    piddir = os.path.join(os.environ.get("OPS_STATE_DIR", ""), "pids")
    if os.environ.get("OPS_STATE_DIR") and os.path.isdir(piddir):
        with open(os.path.join(piddir, f"{p.name}.pid"), "w") as f:
            f.write(f"{p.proc.pid} {os.path.basename(p.argv[0])}\n")


class BackupGuard(_BackupGuard):
    """`backup-guard serve` with the given arguments; /readyz is checked unverified."""

    def __init__(self, binary: str, name: str, log_dir: str, args: list[str]):
        super().__init__(binary, name, os.path.join(log_dir, f"{name}.log"), args,
                         env=without_proxy(), new_session=True, on_start=_record_pid)

    @property
    def metrics_url(self) -> str:
        return self.metrics_base + "/metrics"

    def wait_ready(self, timeout: float = 40):
        super().wait_ready(timeout, 0.25)


class Prometheus(Process):
    """Debian's prometheus run as our own process, scraping `target` every second, with the rule
    file `rules` loaded when given."""

    def __init__(self, workdir: str, target: str, rules: str | None, name: str = "prometheus"):
        self.port = free_ports(1)[0]
        os.makedirs(workdir, exist_ok=True)
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n")
            if rules:
                f.write(f"rule_files:\n  - {rules}\n")
            f.write("scrape_configs:\n  - job_name: backup-guard\n    metrics_path: /metrics\n"
                    f"    static_configs:\n      - targets: ['{target}']\n")
        self.config = config
        super().__init__(name, [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
            f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
            "--log.level=warn"], os.path.join(workdir, f"{name}.log"),
            env=without_proxy(), new_session=True, on_start=_record_pid)

    def api(self, path: str, **params) -> dict:
        r = requests.get(f"http://127.0.0.1:{self.port}/api/v1/{path}", params=params, timeout=10,
                         proxies={"http": None, "https": None})
        r.raise_for_status()
        body = r.json()
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def ready(self) -> bool:
        if not self.running():
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2,
                                proxies={"http": None, "https": None}).status_code == 200
        except requests.RequestException:
            return False


def default_target(kube: Kube, ns: str, url: str) -> None:
    """The namespace (made when missing) with a `default` BackupTarget of that URL (kept when
    there is one)."""
    kube.ensure_namespace(ns)
    r = kube.request("POST", kube.lh(ns, "backuptargets"),
                     body={"apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget",
                           "metadata": {"name": "default"},
                           "spec": {"backupTargetURL": url, "credentialSecret": "",
                                    "pollInterval": "300s"}})
    assert r.status_code in (201, 409), r.text


def drop_namespace(kube: Kube, kubeconfig: str, register_sh: str, ns: str):
    """Nothing may depend on a stopped server: the webhooks go first, then the finalizers of the
    kinds the load made (best effort; the control plane is torn down anyway), then the namespace."""
    subprocess.run([register_sh, "--kubeconfig", kubeconfig, "--delete-webhooks"],
                   capture_output=True, text=True)
    for plural in ("systembackups", "backups"):
        try:
            kube.strip_finalizers(ns, plural)
        except Exception:  # noqa: BLE001
            pass
    kube.delete_namespace(ns)


def register_webhooks(register_sh: str, kubeconfig: str, url: str, ca_file: str,
                      failure_policy: str = "Fail", timeout_seconds: int = 10):
    r = subprocess.run([register_sh, "--kubeconfig", kubeconfig, "--url", url, "--ca-file", ca_file,
                        "--failure-policy", failure_policy, "--timeout-seconds",
                        str(timeout_seconds)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"register.sh failed ({r.returncode}):\n{r.stderr[-2000:]}")


# --------------------------------------------------------------------------------------------
# openssl CA for file mode


class OpensslCa:
    """An ECDSA P-256 CA made with the openssl CLI, signing leaves for localhost/127.0.0.1."""

    def __init__(self, directory: str, name: str = "backup-guard-ops-ca"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.key = os.path.join(directory, "ca.key")
        self.crt = os.path.join(directory, "ca.crt")
        self._run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out", self.crt,
                   "-days", "2", "-subj", f"/CN={name}",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                   "-addext", "subjectKeyIdentifier=hash"])
        self.count = 0

    @staticmethod
    def _run(argv):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {r.stderr[-1000:]}")

    def leaf(self) -> tuple[str, str]:
        """Returns (cert_pem, key_pem) of a new serving certificate."""
        self.count += 1
        base = os.path.join(self.dir, f"leaf{self.count}")
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "authorityKeyIdentifier=keyid:always\n"
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        self._run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
                   "-subj", f"/CN=localhost-{self.count}"])
        self._run(["openssl", "x509", "-req", "-in", base + ".csr", "-CA", self.crt, "-CAkey",
                   self.key, "-set_serial", str(int(time.time() * 1000) * 100 + self.count),
                   "-out", base + ".crt", "-days", "1", "-extfile", ext])
        with open(base + ".crt") as f:
            cert = f.read()
        with open(base + ".key") as f:
            key = f.read()
        return cert, key


class KubeletDir:
    """The layout kubelet gives a mounted Secret: ..<version>/ dirs, ..data -> the current one,
    and tls.crt / tls.key -> ..data/<file>. swap() replaces ..data atomically (rename)."""

    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.version = 0
        self.cert = os.path.join(directory, "tls.crt")
        self.key = os.path.join(directory, "tls.key")

    def swap(self, cert_pem: str, key_pem: str) -> str:
        self.version += 1
        vdir = f"..v{self.version}"
        os.makedirs(os.path.join(self.dir, vdir))
        for name, data, mode in (("tls.crt", cert_pem, 0o644), ("tls.key", key_pem, 0o600)):
            p = os.path.join(self.dir, vdir, name)
            with open(p, "w") as f:
                f.write(data)
            os.chmod(p, mode)
        tmp = os.path.join(self.dir, "..data_tmp")
        os.symlink(vdir, tmp)
        os.replace(tmp, os.path.join(self.dir, "..data"))  # rename(2): atomic
        for name in ("tls.crt", "tls.key"):
            link = os.path.join(self.dir, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        return vdir

    def remove_old(self):
        """Removes every version dir but the current one (kubelet does this after the swap)."""
        current = os.readlink(os.path.join(self.dir, "..data"))
        for entry in os.listdir(self.dir):
            if entry.startswith("..v") and entry != current:
                p = os.path.join(self.dir, entry)
                for f in os.listdir(p):
                    os.unlink(os.path.join(p, f))
                os.rmdir(p)


# --------------------------------------------------------------------------------------------
# admission load through the real API server


@dataclass
class Failure:
    at: float
    thread: int
    op: str
    detail: str


class AdmissionLoad:
    """Steady admission traffic through the API server from `threads` threads, each paced at
    `rate` operations per second. Every operation goes through at least one of our webhooks and
    checks the webhook's effect (mutation present, denial from our validator), so a bypassed or
    failed webhook is a failure, not only an error status.

    Operations per thread, in a cycle:
      dry-run SystemBackup CREATE   (mutating + validating; finalizer/policy/owner ref expected)
      SystemBackup UPDATE           (merge patch of a persistent object; mutating)
      dry-run Backup CREATE         (validating, allowed)
      dry-run Backup CREATE         (validating, denied 422 naming the backup-volume label)
      dry-run Backup DELETE         (validating, allowed)
      every 4th cycle: real SystemBackup CREATE, DELETE, finalizer removal (an UPDATE of an
      object being deleted: the mutating webhook's matchConditions keep it from the webhook)
    """

    WEBHOOK_CALLS = {"sb-dry-create": 2, "sb-update": 1, "backup-dry-create": 1,
                     "backup-denied": 1, "backup-dry-delete": 1, "sb-create": 2, "sb-delete": 0,
                     "sb-release": 0, "backup-create": 1}

    def __init__(self, kube: Kube, ns: str, tag: str, threads: int = 2, rate: float = 12.0):
        self.kube = kube
        self.ns = ns
        self.tag = tag
        self.threads = threads
        self.rate = rate
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.failures: list[Failure] = []
        self.timeline: list[tuple[float, bool]] = []  # (monotonic time, ok) per operation
        self.latencies: list[float] = []
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.stopped_at = 0.0

    # -- bookkeeping
    def _record(self, thread: int, op: str, ok: bool, detail: str, seconds: float):
        now = time.monotonic()
        with self.lock:
            self.counts[op] = self.counts.get(op, 0) + 1
            self.timeline.append((now, ok))
            self.latencies.append(seconds)
            if not ok:
                self.failures.append(Failure(now, thread, op, detail[:600]))

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())

    def expected_denials(self) -> dict[str, dict[str, int]]:
        """The denials this load asks for, as the API server counts them (webhook -> code -> n)."""
        with self.lock:
            return {VALIDATOR_NAME: {"422": self.counts.get("backup-denied", 0)}}

    def webhook_calls(self) -> int:
        with self.lock:
            return sum(self.WEBHOOK_CALLS.get(op, 0) * n for op, n in self.counts.items())

    def ok_between(self, t0: float, t1: float) -> tuple[int, int]:
        """(succeeded, failed) operations that finished in [t0, t1)."""
        with self.lock:
            sel = [ok for t, ok in self.timeline if t0 <= t < t1]
        return sum(sel), len(sel) - sum(sel)

    def summary(self) -> dict:
        with self.lock:
            lat = sorted(self.latencies)
            dur = (self.stopped_at or time.monotonic()) - self.started_at
            return {
                "operations": sum(self.counts.values()),
                "by_operation": dict(sorted(self.counts.items())),
                "failures": len(self.failures),
                "seconds": round(dur, 1),
                "operations_per_second": round(sum(self.counts.values()) / dur, 1) if dur else 0,
                "latency_p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
                "latency_p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1) if lat else None,
                "latency_max_ms": round(1000 * lat[-1], 1) if lat else None,
            }

    # -- operations
    def _call(self, thread: int, op: str, method: str, path: str, check, **kw):
        t0 = time.monotonic()
        try:
            r = self.kube.request(method, path, timeout=35, **kw)
            problem = check(r)
        except Exception as e:  # noqa: BLE001 - any client-side error is a failed call
            self._record(thread, op, False, f"{type(e).__name__}: {e}", time.monotonic() - t0)
            return None
        self._record(thread, op, problem is None,
                     "" if problem is None else f"HTTP {r.status_code}: {problem}: {r.text[:400]}",
                     time.monotonic() - t0)
        return r if problem is None else None

    def _sb_body(self, name: str) -> dict:
        return {"apiVersion": "longhorn.io/v1beta2", "kind": "SystemBackup",
                "metadata": {"name": name, "labels": {"ops-load": self.tag}}, "spec": {}}

    @staticmethod
    def _mutated(r):
        if r.status_code not in (200, 201):
            return "unexpected status"
        obj = r.json()
        meta = obj.get("metadata", {})
        if FINALIZER not in (meta.get("finalizers") or []):
            return "no longhorn.io finalizer: the mutating webhook did not run"
        if obj.get("spec", {}).get("volumeBackupPolicy") != "if-not-present":
            return "volumeBackupPolicy not defaulted"
        if not any(o.get("kind") == "BackupTarget" for o in meta.get("ownerReferences") or []):
            return "no BackupTarget owner reference"
        return None

    @staticmethod
    def _status(*codes):
        return lambda r: None if r.status_code in codes else "unexpected status"

    @staticmethod
    def _denied_backup_label(r):
        # (An unknown backupMode no longer reaches a webhook: the engine's CRD enumerates it.)
        if r.status_code != 422:
            return "expected 422 from the validating webhook"
        if VALIDATOR_NAME not in r.text or "backup-volume" not in r.text:
            return "denial does not come from our validator naming the backup-volume label"
        return None

    def _worker(self, i: int):
        kube, ns = self.kube, self.ns
        sb_plural = kube.lh(ns, "systembackups")
        bk_plural = kube.lh(ns, "backups")
        persistent_sb = f"{self.tag}-sb-{i}"
        persistent_bk = f"{self.tag}-bk-{i}"
        merge = "application/merge-patch+json"
        # Persistent objects (created through the webhooks as well).
        self._call(i, "sb-create", "POST", sb_plural, self._mutated, body=self._sb_body(persistent_sb))
        self._call(i, "backup-create", "POST", bk_plural, self._status(201),
                   body={"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                         "metadata": {"name": persistent_bk, "labels": {"backup-volume": "vol-1"}},
                         "spec": {"snapshotName": "snap"}})
        n = 0
        period = 1.0 / self.rate
        next_at = time.monotonic()
        cycle = []

        def ops(n):
            yield ("sb-dry-create", "POST", sb_plural, self._mutated,
                   {"body": self._sb_body(f"{self.tag}-dry-{i}-{n}"), "params": {"dryRun": "All"}})
            yield ("sb-update", "PATCH", f"{sb_plural}/{persistent_sb}", self._mutated,
                   {"body": {"metadata": {"labels": {"ops-n": str(n)}}}, "content_type": merge})
            yield ("backup-dry-create", "POST", bk_plural, self._status(201),
                   {"body": {"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                             "metadata": {"name": f"{self.tag}-bk-{i}-{n}",
                                          "labels": {"backup-volume": "vol-1"}},
                             "spec": {"snapshotName": "snap", "backupMode": "full"}},
                    "params": {"dryRun": "All"}})
            yield ("backup-denied", "POST", bk_plural, self._denied_backup_label,
                   {"body": {"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                             "metadata": {"name": f"{self.tag}-bad-{i}-{n}"},
                             "spec": {"snapshotName": "snap", "backupMode": "full"}},
                    "params": {"dryRun": "All"}})
            yield ("backup-dry-delete", "DELETE", f"{bk_plural}/{persistent_bk}", self._status(200),
                   {"params": {"dryRun": "All"}})
            if n % 4 == 0:
                name = f"{self.tag}-rt-{i}-{n}"
                yield ("sb-create", "POST", sb_plural, self._mutated, {"body": self._sb_body(name)})
                yield ("sb-delete", "DELETE", f"{sb_plural}/{name}", self._status(200, 202), {})
                yield ("sb-release", "PATCH", f"{sb_plural}/{name}", self._status(200, 404),
                       {"body": {"metadata": {"finalizers": None}}, "content_type": merge})

        while not self.stop_event.is_set():
            if not cycle:
                cycle = list(ops(n))
                n += 1
            op, method, path, check, kw = cycle.pop(0)
            self._call(i, op, method, path, check, **kw)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            elif delay < -1:  # fell behind (slow machine): do not burst to catch up
                next_at = time.monotonic()

    def start(self):
        self.started_at = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._worker, args=(i,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self.stop_event.set()
        for t in self._threads:
            t.join(60)
        self.stopped_at = time.monotonic()

    def cleanup(self):
        """Removes the persistent objects (best effort)."""
        for i in range(self.threads):
            for plural, name in (("systembackups", f"{self.tag}-sb-{i}"),
                                 ("backups", f"{self.tag}-bk-{i}")):
                path = self.kube.lh(self.ns, plural, name)
                try:
                    self.kube.request("DELETE", path)
                    self.kube.request("PATCH", path, body={"metadata": {"finalizers": None}},
                                      content_type="application/merge-patch+json")
                except requests.RequestException:
                    pass
