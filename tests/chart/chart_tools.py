"""Helpers for the chart tests: the tools (helm, kubectl, promtool, backup-guard), rendering the
chart, and a backup-guard server run as a local process under a ServiceAccount's token."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgtest.ports import free_port  # noqa: E402,F401 - re-exported
from bgtest.procs import stop_process  # noqa: E402
from bgtest.server import backup_guard_bin as _backup_guard_bin  # noqa: E402
from bgtest.wait import wait_until as _wait_until  # noqa: E402

CHART_TESTS_DIR = Path(__file__).resolve().parent
ROOT = CHART_TESTS_DIR.parents[1]
CHART_DIR = ROOT / "charts" / "backup-guard"
FIXTURES = CHART_TESTS_DIR / "fixtures"
VALUES_DIR = FIXTURES / "values"
E2E_DIR = ROOT / "tests" / "e2e"

# Every value set the lint and dry-run tests use: (id, values file).
VALUE_SETS = sorted((p.stem, p) for p in VALUES_DIR.glob("*.yaml"))


def run(cmd: list[str], *, check: bool = True, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs a command and returns its result; with check, a non-zero exit is an assertion error
    that shows the command and both streams."""
    proc = subprocess.run([str(c) for c in cmd], input=input, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


def tool_path(name: str, env_var: str) -> str:
    """A control-plane tool: $<env_var>, else built or reused by tests/e2e/build-tools.sh."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    out = run([E2E_DIR / "build-tools.sh", "--print-path", name], timeout=1800)
    return out.stdout.strip().splitlines()[-1]


def promtool_path() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not installed (Debian package prometheus; run-chart-tests.sh installs it)"
    return path


def backup_guard_bin() -> Path:
    path = _backup_guard_bin()
    assert path.is_file() and os.access(path, os.X_OK), (
        f"backup-guard binary not found at {path} (run `make build`, or set BACKUP_GUARD_BIN)")
    return path


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.2):
    """Polls predicate until it returns something truthy, and returns that."""
    return _wait_until(predicate, timeout, interval, what)


class Helm:
    def __init__(self, path: str, kubeconfig: str | None = None):
        self.path = path
        self.kubeconfig = kubeconfig

    def __call__(self, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [self.path, *args]
        if self.kubeconfig:
            cmd += ["--kubeconfig", self.kubeconfig]
        return run(cmd, check=check, timeout=timeout)

    def template(self, *args, release: str = "bg", namespace: str = "longhorn-system") -> str:
        """Rendered manifests (hooks included) of the chart with extra helm arguments."""
        return self("template", release, CHART_DIR, "--namespace", namespace, *args).stdout

    def render(self, *args, **kwargs) -> list[dict]:
        return parse_manifests(self.template(*args, **kwargs))


def parse_manifests(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [o for o in objects
               if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


class Kubectl:
    def __init__(self, path: str, kubeconfig: str):
        self.path = path
        self.kubeconfig = kubeconfig

    def __call__(self, *args, check: bool = True, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        return run([self.path, "--kubeconfig", self.kubeconfig, *args], check=check, input=input,
                   timeout=timeout)

    def json(self, *args) -> dict:
        return json.loads(self(*args, "-o", "json").stdout)

    def get_or_none(self, *args) -> dict | None:
        """`kubectl get ARGS` as JSON, or None when the object does not exist."""
        proc = self("get", *args, "-o", "json", check=False)
        if proc.returncode != 0:
            assert "NotFound" in proc.stderr or "not found" in proc.stderr, proc.stderr
            return None
        return json.loads(proc.stdout)

    def apply(self, objects: list[dict] | dict, *args) -> subprocess.CompletedProcess:
        docs = objects if isinstance(objects, list) else [objects]
        return self("apply", *args, "-f", "-", input=yaml.safe_dump_all(docs))

    def can_i(self, verb: str, resource: str, user: str, namespace: str | None = None) -> bool:
        cmd = ["auth", "can-i", verb, resource, "--as", user]
        cmd += ["-n", namespace] if namespace else []
        proc = self(*cmd, check=False)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource}: {proc.stderr}"
        return answer == "yes"

    def cluster(self) -> tuple[str, str]:
        """The API server URL and its CA (PEM) from the admin kubeconfig."""
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        else:
            ca = Path(cluster["certificate-authority"]).read_text()
        return cluster["server"], ca

    def token_kubeconfig(self, service_account: str, namespace: str, path: Path) -> Path:
        """Writes a kubeconfig that authenticates as the ServiceAccount with a fresh token, the way
        a pod would (bearer token, the cluster's CA)."""
        token = self("create", "token", service_account, "-n", namespace,
                     "--duration", "1h").stdout.strip()
        server, ca = self.cluster()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
            "users": [{"name": service_account, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {
                "cluster": "cluster", "user": service_account, "namespace": namespace}}],
            "current-context": "sa",
        }
        path.write_text(yaml.safe_dump(config, default_flow_style=False))
        path.chmod(0o600)
        return path


def service_account_user(name: str, namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    """args with the value after `flag` replaced (the flag must be present once)."""
    assert args.count(flag) == 1, f"{flag} appears {args.count(flag)} times in {args}"
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def drop_flags(args: list[str], flags: set[str]) -> list[str]:
    """args without the given `--flag value` pairs."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


@dataclass
class LocalServer:
    """`backup-guard serve` as a local process, as the chart's Deployment would run it."""

    binary: Path
    args: list[str]
    log_path: Path
    listen_port: int
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.binary), *self.args], stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60):
        """Waits for /readyz (the server's own TLS and cluster checks) over TLS, unverified: in
        self-managed mode the CA is only known once the server has made it."""
        import requests
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        url = f"https://127.0.0.1:{self.listen_port}/readyz"

        def ready():
            if not self.alive():
                return "exited"
            try:
                return requests.get(url, verify=False, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        try:
            result = wait_until(ready, timeout, f"backup-guard /readyz on port {self.listen_port}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- server log ---\n{self.log()[-4000:]}") from None
        if result == "exited":
            raise AssertionError(f"backup-guard {' '.join(self.args)} exited with "
                                 f"{self.proc.returncode}:\n{self.log()[-4000:]}")

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        stop_process(self.proc, timeout=30, kill_wait=None)
        if getattr(self, "log_file", None):
            self.log_file.close()
