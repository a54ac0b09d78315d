"""Helpers for the e2e tests: constants, polling, the longhorn.io object helper and the
backup-guard server process wrapper. The fixtures that use them are in conftest.py."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
GROUP = "longhorn.io"
VERSION = "v1beta2"
NAMESPACE = "longhorn-system"
FINALIZER = "longhorn.io"

# kind -> plural for the CRD subset in manifests/crds.yaml
PLURALS = {
    "BackupTarget": "backuptargets",
    "BackupVolume": "backupvolumes",
    "Backup": "backups",
    "SystemBackup": "systembackups",
    "BackupBackingImage": "backupbackingimages",
    "Volume": "volumes",
    "Setting": "settings",
}



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, message: str = "condition"):
    """Polls predicate() until it returns a truthy value, which is returned; fails on timeout."""
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
            extra = f" (last error: {last_error!r})" if last_error else ""
            pytest.fail(f"timed out after {timeout}s waiting for {message}{extra}")
        time.sleep(interval)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Runs a command, failing the test with its output when it exits non-zero."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        pytest.fail(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def backup_guard_bin() -> Path:
    return Path(os.environ.get("BACKUP_GUARD_BIN", REPO_ROOT / "build" / "backup-guard"))


def generate_certs(out_dir: Path) -> Path:
    """Serving certificate for 127.0.0.1/localhost made by `backup-guard certs generate`."""
    binary = backup_guard_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"backup-guard binary not found at {binary} (build it or set BACKUP_GUARD_BIN)")
    out_dir.mkdir(parents=True, exist_ok=True)
    run([str(binary), "certs", "generate", "--out", str(out_dir),
         "--dns", "localhost", "--ip", "127.0.0.1"])
    for name in ("ca.crt", "tls.crt", "tls.key"):
        if not (out_dir / name).is_file():
            pytest.fail(f"`backup-guard certs generate` did not write {out_dir / name}")
    return out_dir


class Longhorn:
    """Thin helper over CustomObjectsApi for the longhorn.io/v1beta2 kinds."""

    def __init__(self, api: client.CustomObjectsApi, namespace: str = NAMESPACE):
        self.api = api
        self.namespace = namespace

    @staticmethod
    def body(kind: str, name: str, spec=None, labels=None, annotations=None, **extra) -> dict:
        obj = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
        }
        if labels:
            obj["metadata"]["labels"] = dict(labels)
        if annotations:
            obj["metadata"]["annotations"] = dict(annotations)
        if spec is not None:
            obj["spec"] = spec
        obj.update(extra)
        return obj

    def create(self, obj: dict, namespace: str | None = None, **kw) -> dict:
        return self.api.create_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[obj["kind"]], obj, **kw)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        return self.api.get_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name)

    def get_or_none(self, kind: str, name: str, namespace: str | None = None):
        try:
            return self.get(kind, name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        return self.api.list_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind],
            label_selector=label_selector)["items"]

    def patch(self, kind: str, name: str, patch: dict, namespace: str | None = None) -> dict:
        return self.api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name, patch)

    def patch_status(self, kind: str, name: str, status: dict, namespace: str | None = None) -> dict:
        return self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name, {"status": status})

    def delete(self, kind: str, name: str, namespace: str | None = None, **kw):
        return self.api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name, **kw)

    def remove_finalizers(self, kind: str, name: str, namespace: str | None = None):
        try:
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace or self.namespace, PLURALS[kind], name,
                {"metadata": {"finalizers": None}})
        except ApiException as e:
            if e.status not in (404, 422):
                raise

    def wait_gone(self, kind: str, name: str, namespace: str | None = None, timeout: float = 30.0):
        wait_until(lambda: self.get_or_none(kind, name, namespace) is None, timeout=timeout,
                   message=f"{kind} {namespace or self.namespace}/{name} to be gone")

    def purge(self, namespace: str | None = None, timeout: float = 30.0):
        """Deletes every object of every kind in the namespace, removing finalizers as needed."""
        ns = namespace or self.namespace
        for kind in PLURALS:
            for obj in self.list(kind, ns):
                name = obj["metadata"]["name"]
                try:
                    self.delete(kind, name, ns)
                except ApiException as e:
                    if e.status != 404:
                        # a validating webhook may refuse; force it through
                        self.remove_finalizers(kind, name, ns)
                self.remove_finalizers(kind, name, ns)
        for kind in PLURALS:
            wait_until(lambda k=kind: not self.list(k, ns), timeout=timeout,
                       message=f"no {kind} left in {ns}")


class BackupGuardServer:
    """A `backup-guard serve` process against the e2e control plane."""

    def __init__(self, kubeconfig: Path, cert_dir: Path, port: int | None = None,
                 metrics_port: int | None = None, namespace: str = NAMESPACE,
                 extra_args: list[str] | None = None, log_dir: Path | None = None,
                 name: str = "backup-guard"):
        self.kubeconfig = Path(kubeconfig)
        self.cert_dir = Path(cert_dir)
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.namespace = namespace
        self.extra_args = list(extra_args or [])
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="backup-guard-e2e-"))
        self.log_path = self.log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def ca_file(self) -> Path:
        return self.cert_dir / "ca.crt"

    def command(self) -> list[str]:
        return [
            str(backup_guard_bin()), "serve",
            "--listen", f"127.0.0.1:{self.port}",
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--tls-cert-file", str(self.cert_dir / "tls.crt"),
            "--tls-key-file", str(self.cert_dir / "tls.key"),
            "--kubeconfig", str(self.kubeconfig),
            "--namespace", self.namespace,
            *self.extra_args,
        ]

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 30.0) -> "BackupGuardServer":
        binary = backup_guard_bin()
        if not os.access(binary, os.X_OK):
            pytest.fail(f"backup-guard binary not found at {binary} (build it or set BACKUP_GUARD_BIN)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"backup-guard exited with {self.proc.returncode} before it was ready; "
                            f"log {self.log_path}:\n{self.log_tail()}")
            try:
                r = requests.get(f"{self.url}/readyz", verify=str(self.ca_file), timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(f"backup-guard not ready at {self.url}/readyz after {timeout}s "
                            f"(last: {last}); log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after timeout; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def restart(self, timeout: float = 30.0) -> "BackupGuardServer":
        self.stop()
        return self.start(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
