"""Fixtures for the operations tests. The runner (run-ops-tests.sh) starts the control plane and
passes it in the environment:

  OPS_KUBECONFIG     admin kubeconfig of the running control plane (required)
  OPS_STATE_DIR      where servers, Prometheus and certificates keep their files and logs
  BACKUP_GUARD_BIN   the server binary (default <repo>/build/backup-guard)
  OPS_REGISTER_SH    tests/e2e/register.sh (default), called as-is
"""
from __future__ import annotations

import os
import tempfile

import pytest

from opslib import Kube, default_target, drop_namespace
from bgtest.kube import kubeconfig_from_env, reachable  # noqa: E402
from bgtest.figures import report as figures_report  # noqa: E402 - on sys.path after opslib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOAD_NAMESPACE = "ops-load"


def pytest_configure(config):
    config._ops_figures = {}
    # /readyz probes use verify=False on purpose (readiness, not trust, is what they check).
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures_report(terminalreporter, "ops figures", getattr(config, "_ops_figures", {}),
                   os.environ.get("OPS_STATE_DIR"))


@pytest.fixture(scope="session")
def figures(pytestconfig):
    return pytestconfig._ops_figures


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    return kubeconfig_from_env("OPS_KUBECONFIG", "tests/ops/run-ops-tests.sh")


@pytest.fixture(scope="session")
def kube(kubeconfig) -> Kube:
    return reachable(Kube(kubeconfig))


@pytest.fixture(scope="session")
def binary() -> str:
    b = os.environ.get("BACKUP_GUARD_BIN", os.path.join(ROOT, "build", "backup-guard"))
    if not os.access(b, os.X_OK):
        pytest.fail(f"backup-guard binary not found at {b}", pytrace=False)
    return b


@pytest.fixture(scope="session")
def register_sh() -> str:
    return os.environ.get("OPS_REGISTER_SH", os.path.join(ROOT, "tests", "e2e", "register.sh"))


@pytest.fixture(scope="session")
def state_dir() -> str:
    d = os.environ.get("OPS_STATE_DIR") or tempfile.mkdtemp(prefix="backup-guard-ops.")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture
def work_dir(state_dir, request) -> str:
    d = os.path.join(state_dir, request.node.name)
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def load_namespace(kube, kubeconfig, register_sh):
    """A namespace with a `default` BackupTarget (URL set), where SystemBackup creates are allowed.
    Afterwards the webhooks are removed first, so that clean-up never depends on a server."""
    ns = LOAD_NAMESPACE
    # CRDs come from `controlplane.sh up --crds`; make sure they are there and the namespace too.
    kube.ensure_namespace("longhorn-system")
    default_target(kube, ns, "s3://ops-bucket@us-east-1/")
    yield ns
    drop_namespace(kube, kubeconfig, register_sh, ns)
