"""Every value set renders objects that the real API server accepts (server-side dry run): schema
validation of built-in kinds, the CRDs themselves, and the stand-in CRDs for the Prometheus operator
and cert-manager kinds (fixtures/standin-crds.yaml, installed by run-chart-tests.sh)."""

from __future__ import annotations

import pytest

from chart_tools import VALUE_SETS, parse_manifests

NAMESPACE = "bg-dry-run"


@pytest.fixture(scope="module")
def namespaces(kubectl):
    """The release namespace, and the storage namespace one value set uses."""
    for ns in (NAMESPACE, "bg-storage"):
        kubectl("apply", "-f", "-", input=kubectl(
            "create", "namespace", ns, "--dry-run=client", "-o", "yaml").stdout)
    return NAMESPACE


@pytest.mark.parametrize("values", [v for _, v in VALUE_SETS], ids=[n for n, _ in VALUE_SETS])
def test_api_server_accepts_the_rendered_objects(helm, kubectl, namespaces, values):
    manifests = helm.template("-f", values, namespace=namespaces)
    objects = parse_manifests(manifests)
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=manifests).stdout
    # One line per object, each "... created (server dry run)" or "... configured/unchanged".
    accepted = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(objects), out
