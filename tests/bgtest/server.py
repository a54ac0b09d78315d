"""`backup-guard serve` as a child process of a test."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests
import urllib3

from bgtest.metrics import Metrics, scrape
from bgtest.ports import free_ports
from bgtest.procs import Process
from bgtest.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


def backup_guard_bin() -> Path:
    """$BACKUP_GUARD_BIN, else <repo>/build/backup-guard."""
    return Path(os.environ.get("BACKUP_GUARD_BIN", ROOT / "build" / "backup-guard"))


def generate_certs(binary, out_dir: Path) -> Path:
    """ca.crt, tls.crt and tls.key for 127.0.0.1/localhost made by `backup-guard certs generate`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(binary), "certs", "generate", "--out", str(out_dir),
                           "--dns", "localhost", "--ip", "127.0.0.1"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"`backup-guard certs generate` failed ({proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")
    for name in ("ca.crt", "tls.crt", "tls.key"):
        if not (out_dir / name).is_file():
            raise AssertionError(f"`backup-guard certs generate` did not write {out_dir / name}")
    return out_dir


def serve_args(cert_dir=None, kubeconfig=None, namespace: str | None = None) -> list[str]:
    """The flags of file-mode certificates, the kubeconfig and the namespace (each when given)."""
    args: list[str] = []
    if cert_dir is not None:
        args += ["--tls-cert-file", str(Path(cert_dir) / "tls.crt"),
                 "--tls-key-file", str(Path(cert_dir) / "tls.key")]
    if kubeconfig:
        args += ["--kubeconfig", str(kubeconfig)]
    if namespace:
        args += ["--namespace", namespace]
    return args


class BackupGuard(Process):
    """`backup-guard serve --listen 127.0.0.1:<port> --metrics-listen 127.0.0.1:<metrics_port>
    <args>`, ports free ones unless given. /readyz is verified against `ca_file` when given (and
    only checked for its status otherwise)."""

    def __init__(self, binary, name: str, log_path, args: list[str], port: int | None = None,
                 metrics_port: int | None = None, ca_file=None, **process_kw):
        if port is None or metrics_port is None:
            picked = free_ports(2)
            port = port or picked[0]
            metrics_port = metrics_port or picked[1]
        self.binary = str(binary)
        self.port, self.metrics_port = port, metrics_port
        self.args = list(args)
        self.ca = str(ca_file) if ca_file else None
        super().__init__(name, self.command(), log_path, **process_kw)

    def command(self) -> list[str]:
        return [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *self.args]

    def start(self):
        self.argv = self.command()
        return super().start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def metrics_base(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def readyz_answer(self, timeout: float = 2.0) -> tuple[int, str]:
        """/readyz's status code and body (the reason, when not ready)."""
        s = requests.Session()
        s.trust_env = False
        if self.ca is None:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        r = s.get(self.url + "/readyz", verify=self.ca or False, timeout=timeout)
        return r.status_code, r.text

    def readyz(self, timeout: float = 2.0) -> int:
        return self.readyz_answer(timeout)[0]

    def exited_error(self) -> str:
        return f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"

    def ready(self) -> bool:
        """/readyz answers 200; AssertionError when the process has exited."""
        if not self.running():
            raise AssertionError(self.exited_error())
        try:
            return self.readyz() == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = 30, interval: float = 0.2, fail=None):
        """Waits for /readyz 200; fails at once (with the log) when the process exits."""
        def ready():
            if not self.running():
                return "exited"
            return self.ready()

        kw = {"fail": fail} if fail else {}
        got = wait_until(ready, timeout, interval,
                         lambda: f"{self.name} /readyz at {self.url}; log {self.log_path}:\n"
                                 f"{self.log_tail()}", **kw)
        if got == "exited":
            (fail or _raise)(self.exited_error())

    def metrics(self) -> Metrics:
        return scrape(self.metrics_base + "/metrics")


def _raise(message: str):
    raise AssertionError(message)
