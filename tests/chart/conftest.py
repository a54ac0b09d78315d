"""Fixtures for the chart tests (charts/backup-guard).

Normally run by tests/chart/run-chart-tests.sh, which builds the tools, starts a control plane
with the stand-in CRDs (fixtures/standin-crds.yaml) and exports:

    BG_KUBECONFIG     admin kubeconfig of that control plane
    HELM, KUBECTL     the tools (else built or reused by tests/e2e/build-tools.sh)
    BACKUP_GUARD_BIN  the backup-guard binary (default: <repo>/build/backup-guard)

By hand: `BG_STATE_DIR=/tmp/bg-chart tests/e2e/controlplane.sh up --crds
tests/chart/fixtures/standin-crds.yaml`, then run pytest with BG_STATE_DIR set the same. The
lint, render and promtool tests need no control plane; the others fail (never skip) without one.
"""

from __future__ import annotations

import os

import pytest

from chart_tools import E2E_DIR, Helm, Kubectl, run, tool_path


@pytest.fixture(scope="session")
def helm() -> Helm:
    """helm for offline work (lint, template)."""
    return Helm(tool_path("helm", "HELM"))


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("BG_KUBECONFIG")
    if not path:
        proc = run([E2E_DIR / "controlplane.sh", "env"], check=False)
        assert proc.returncode == 0, (
            "no control plane: run tests/chart/run-chart-tests.sh, or start one with "
            "tests/e2e/controlplane.sh up and set BG_STATE_DIR\n" + proc.stderr)
        path = proc.stdout.strip().removeprefix("KUBECONFIG=")
    assert os.path.isfile(path), f"kubeconfig {path} does not exist"
    return path


@pytest.fixture(scope="session")
def kubectl(kubeconfig) -> Kubectl:
    return Kubectl(tool_path("kubectl", "KUBECTL"), kubeconfig)


@pytest.fixture(scope="session")
def cluster_helm(helm, kubeconfig) -> Helm:
    """helm against the control plane."""
    return Helm(helm.path, kubeconfig)
