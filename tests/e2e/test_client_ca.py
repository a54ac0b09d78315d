"""--client-ca-file end to end: backup-guard accepts webhook calls only from a client that presents
a certificate of the configured CA, and the real kube-apiserver is such a client through its
admission-control kubeconfig (controlplane.sh: user "*", pki/webhook-client.crt issued by
pki/webhook-client-ca.crt).

  - through the API server, a SystemBackup is mutated by a server that verifies client
    certificates (the call passed verification), and that server counted the call;
  - a direct call without a client certificate is answered 401; with the API server's
    certificate it is answered;
  - a client certificate from another CA fails the TLS handshake;
  - /healthz and /readyz answer without a client certificate (kubelet probes carry none).
"""

import uuid

import pytest
import requests

from bg_e2e import (
    FINALIZER, Metrics, backup_target_ref, issue_client_cert, owner_refs, unique,
    wait_until, webhook_client_credentials,
)


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only, never a proxy
    return s


def _review(namespace: str = "e2e-client-ca") -> dict:
    uid = str(uuid.uuid4())
    obj = {"apiVersion": "longhorn.io/v1beta2", "kind": "SystemBackup",
           "metadata": {"name": "direct", "namespace": namespace}, "spec": {}}
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "longhorn.io", "version": "v1beta2", "kind": "SystemBackup"},
            "resource": {"group": "longhorn.io", "version": "v1beta2",
                         "resource": "systembackups"},
            "requestKind": {"group": "longhorn.io", "version": "v1beta2", "kind": "SystemBackup"},
            "requestResource": {"group": "longhorn.io", "version": "v1beta2",
                                "resource": "systembackups"},
            "name": "direct", "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "e2e"}, "object": obj, "oldObject": None,
            "dryRun": False,
        },
    }


def _mutation_calls(server) -> float:
    """Mutation calls the server answered 200 (a call refused with 401 is counted with its code)."""
    m = Metrics(_session().get(f"{server.metrics_url}/metrics", timeout=5).text)
    return m.sum("backup_guard_admission_requests_total", webhook="mutation", code="200")


@pytest.fixture
def client_ca_server(backup_guard_factory):
    """A backup-guard that requires client certificates of the API server's webhook client CA."""
    ca, _, _ = webhook_client_credentials()
    return backup_guard_factory(extra_args=["--client-ca-file", str(ca)])


@pytest.mark.disruptive
def test_systembackup_created_through_the_api_server_is_mutated_by_a_client_ca_server(
        lh, webhook_configs, client_ca_server):
    lh.default_target()
    server = client_ca_server
    webhook_configs.set(base_url=server.url)

    # The API server's webhook configuration cache follows within a moment; until then the
    # probes still reach the session server.
    def called():
        webhook_configs.probe(lh.namespace)
        return _mutation_calls(server) > 0
    wait_until(called, timeout=30, message=f"the API server to call {server.url}")

    before = _mutation_calls(server)
    name = unique("sb")
    created = lh.create(lh.body("SystemBackup", name))

    assert FINALIZER in (created["metadata"].get("finalizers") or []), created["metadata"]
    target = lh.get("BackupTarget", "default")
    assert owner_refs(created, "BackupTarget") == [backup_target_ref(target)], created["metadata"]
    assert _mutation_calls(server) > before, "the client-CA server did not count the call"


def test_a_direct_call_without_a_client_certificate_is_401(client_ca_server):
    server = client_ca_server
    r = _session().post(f"{server.url}/v1/webhook/mutation", json=_review(),
                        verify=str(server.ca_file), timeout=10)
    assert r.status_code == 401, (r.status_code, r.text[:300])
    assert "client certificate" in r.text, r.text[:300]

    # The same call with the API server's own client certificate is answered.
    _, cert, key = webhook_client_credentials()
    review = _review()
    r = _session().post(f"{server.url}/v1/webhook/mutation", json=review,
                        verify=str(server.ca_file), cert=(str(cert), str(key)), timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    response = r.json()["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True and response.get("patchType") == "JSONPatch", response


def test_a_client_certificate_from_another_ca_fails_the_handshake(client_ca_server, tmp_path):
    server = client_ca_server
    _, cert, key = issue_client_cert(tmp_path / "other-ca", "not-the-apiserver")
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        r = _session().post(f"{server.url}/v1/webhook/mutation", json=_review(),
                            verify=str(server.ca_file), cert=(str(cert), str(key)), timeout=10)
        pytest.fail(f"answered {r.status_code} instead of failing the handshake: {r.text[:300]}")
    # requests reports TLS alerts as SSLError, a subclass of ConnectionError; with TLS 1.3 the
    # server's alert can also arrive as a reset once the client has sent its request.
    text = str(caught.value).lower()
    assert any(s in text for s in ("alert", "ssl", "reset", "certificate")), text
    # The server is still serving.
    assert _session().get(f"{server.url}/healthz", verify=str(server.ca_file),
                          timeout=5).status_code == 200


def test_health_endpoints_stay_open_without_a_client_certificate(client_ca_server):
    server = client_ca_server
    s = _session()
    healthz = s.get(f"{server.url}/healthz", verify=str(server.ca_file), timeout=5)
    assert healthz.status_code == 200, healthz.text
    readyz = s.get(f"{server.url}/readyz", verify=str(server.ca_file), timeout=5)
    assert readyz.status_code == 200, readyz.text
