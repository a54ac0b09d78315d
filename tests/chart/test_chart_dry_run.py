"""Every value set renders objects that the real API server accepts (server-side dry run): schema
validation of built-in kinds, the CRDs themselves, and the stand-in CRDs for the Prometheus operator
and cert-manager kinds (fixtures/standin-crds.yaml, installed by run-chart-tests.sh)."""

from __future__ import annotations

import pytest

from chart_tools import CHART_DIR, VALUE_SETS, parse_manifests

NAMESPACE = "bg-dry-run"


@pytest.fixture(scope="module")
def namespaces(kubectl):
    """The release namespace, and the storage namespace one value set uses. Both hold the
    "restricted" Pod Security Standard, so the API server warns about any workload that breaks it."""
    for ns in (NAMESPACE, "bg-storage"):
        kubectl("apply", "-f", "-", input=kubectl(
            "create", "namespace", ns, "--dry-run=client", "-o", "yaml").stdout)
        kubectl("label", "--overwrite", "namespace", ns,
                "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted")
    return NAMESPACE


@pytest.mark.parametrize("values", [v for _, v in VALUE_SETS], ids=[n for n, _ in VALUE_SETS])
def test_api_server_accepts_the_rendered_objects(helm, kubectl, namespaces, values):
    manifests = helm.template("-f", values, namespace=namespaces)
    objects = parse_manifests(manifests)
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=manifests)
    # One line per object, each "... created (server dry run)" or "... configured/unchanged".
    accepted = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(objects), proc.stdout
    # The Deployment and the hook Job meet the restricted Pod Security Standard.
    assert "PodSecurity" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("values", [v for _, v in VALUE_SETS], ids=[n for n, _ in VALUE_SETS])
def test_install_notes_render(cluster_helm, namespaces, values):
    out = cluster_helm("install", "bg", CHART_DIR, "--namespace", namespaces, "--dry-run=client",
                       "-f", values).stdout
    notes = out[out.index("NOTES:"):]
    assert "<no value>" not in notes, notes
    assert "validatingwebhookconfiguration bg-backup-guard-validating" in notes, notes
