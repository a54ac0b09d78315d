"""Fixtures for the fault-injection tests. The runner (run-fault-tests.sh) starts the control plane
and passes it in the environment:

  FAULTS_KUBECONFIG   admin kubeconfig of the running control plane (required)
  BG_STATE_DIR        the control plane's state dir (pids, logs): the API-server fault tests
                      signal and restart its processes
  FAULTS_STATE_DIR    where servers, the load balancer and certificates keep their files and logs
  BACKUP_GUARD_BIN    the server binary (default <repo>/build/backup-guard)
  FAULTS_REGISTER_SH  tests/e2e/register.sh (default), called as-is
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from faultlib import ROOT, BackupGuard, ControlPlane, Kube, PidBook, log, wait_until
from bgtest.kube import kubeconfig_from_env, reachable  # noqa: E402
from bgtest.figures import report as figures_report  # noqa: E402 - on sys.path after faultlib


def pytest_configure(config):
    config._fault_figures = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures_report(terminalreporter, "fault figures", getattr(config, "_fault_figures", {}),
                   os.environ.get("FAULTS_STATE_DIR"))


@pytest.fixture
def figures(request):
    """A dict for this test's measured figures (printed in the summary, kept in figures.json)."""
    data = {}
    request.config._fault_figures[request.node.nodeid] = data
    return data


@pytest.fixture(scope="session")
def state_dir() -> Path:
    d = os.environ.get("FAULTS_STATE_DIR") or tempfile.mkdtemp(prefix="backup-guard-faults.")
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


@pytest.fixture(scope="session")
def pids(state_dir) -> PidBook:
    return PidBook(state_dir / "pids")


@pytest.fixture(scope="session")
def binary() -> str:
    b = os.environ.get("BACKUP_GUARD_BIN", str(ROOT / "build" / "backup-guard"))
    if not os.access(b, os.X_OK):
        pytest.fail(f"backup-guard binary not found at {b}", pytrace=False)
    return b


@pytest.fixture(scope="session")
def cert_dir(binary, state_dir) -> Path:
    d = state_dir / "certs"
    subprocess.run([binary, "certs", "generate", "--out", str(d), "--dns", "localhost",
                    "--ip", "127.0.0.1"], check=True, capture_output=True, timeout=30)
    for f in ("ca.crt", "tls.crt", "tls.key"):
        assert (d / f).is_file(), f"certs generate did not write {f}"
    return d


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    return kubeconfig_from_env("FAULTS_KUBECONFIG", "tests/faults/run-fault-tests.sh")


@pytest.fixture(scope="session")
def kube(kubeconfig) -> Kube:
    return reachable(Kube(kubeconfig))


@pytest.fixture(scope="session")
def control_plane(kube) -> ControlPlane:
    state = os.environ.get("BG_STATE_DIR", "")
    if not state or not os.path.isdir(os.path.join(state, "pids")):
        pytest.fail("BG_STATE_DIR does not name the control plane's state dir", pytrace=False)
    return ControlPlane(state, kube)


@pytest.fixture(scope="session")
def register_sh() -> str:
    return os.environ.get("FAULTS_REGISTER_SH", str(ROOT / "tests" / "e2e" / "register.sh"))


@pytest.fixture
def servers(binary, cert_dir, state_dir, pids, request):
    """Factory for backup-guard processes; every one is stopped after the test (also on failure),
    and the tail of each log is printed when the test failed."""
    made: list[BackupGuard] = []
    test = re.sub(r"[^a-zA-Z0-9_.-]+", "_", request.node.name)

    def make(name: str, **kw) -> BackupGuard:
        s = BackupGuard(binary, cert_dir, state_dir / "logs" / test, pids, f"{test}.{name}", **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        rc = s.stop()
        if rc is not None:
            log(f"{s.name} stopped (exit {rc})")


@pytest.fixture
def namespace(kube, request):
    """A fresh namespace for this test, emptied (finalizers removed) and deleted afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:30].rstrip("-")
    ns = f"faults-{base}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]}"
    kube.ensure_namespace(ns)
    yield ns
    try:
        wait_until("the API server before clean-up", kube.ready, 90, 0.5)
    except AssertionError as e:
        log(f"clean-up of {ns}: {e}")
    problems = kube.purge(ns)
    if problems:
        log(f"clean-up of {ns}: {problems}")
