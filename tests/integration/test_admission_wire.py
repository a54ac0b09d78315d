"""The server's answers, checked with tools we did not write: an independent RFC 6902
implementation (jsonpatch), requests/urllib3 with certificate verification, curl and openssl."""
import base64
import copy
import json
import shutil
import subprocess

import jsonpatch
import pytest


def review(obj, operation="CREATE", uid="u-1", version="admission.k8s.io/v1", resource="systembackups",
           kind="SystemBackup", old=None):
    req = {"uid": uid,
           "kind": {"group": "longhorn.io", "version": "v1beta2", "kind": kind},
           "resource": {"group": "longhorn.io", "version": "v1beta2", "resource": resource},
           "name": (obj or old)["metadata"]["name"], "namespace": "longhorn-system",
           "operation": operation, "object": obj, "oldObject": old}
    return {"apiVersion": version, "kind": "AdmissionReview", "request": req}


def system_backup(**metadata):
    meta = {"name": "sb-1", "namespace": "longhorn-system", **metadata}
    return {"apiVersion": "longhorn.io/v1beta2", "kind": "SystemBackup", "metadata": meta,
            "spec": {"volumeBackupPolicy": ""}, "status": {"state": ""}}


def mutate(server, obj, **kw):
    res = server.post("/v1/webhook/mutation", review(obj, **kw))
    assert res.status_code == 200, res.text
    resp = res.json()["response"]
    if "patch" not in resp:
        return obj, []
    assert resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    return jsonpatch.apply_patch(obj, ops), ops


def test_patch_applied_by_independent_implementation_gives_expected_object(server):
    obj = system_backup(labels={"app": "x"}, annotations={"example.com/key": "v"})
    mutated, ops = mutate(server, obj)
    expected = copy.deepcopy(obj)
    expected["metadata"]["finalizers"] = ["longhorn.io"]
    expected["spec"]["volumeBackupPolicy"] = "if-not-present"
    assert mutated == expected
    assert all(op["op"] in ("add", "replace") for op in ops), ops


def test_existing_finalizers_are_appended_to_with_dash_and_kept(server):
    obj = system_backup(finalizers=["example.com/keep"])
    mutated, ops = mutate(server, obj)
    assert mutated["metadata"]["finalizers"] == ["example.com/keep", "longhorn.io"]
    assert {"op": "add", "path": "/metadata/finalizers/-", "value": "longhorn.io"} in ops


def test_resending_the_mutated_object_gives_no_patch(server):
    mutated, _ = mutate(server, system_backup())
    again, ops = mutate(server, mutated, operation="UPDATE", old=mutated)
    assert ops == []
    assert again == mutated


def test_object_being_deleted_is_not_mutated(server):
    obj = system_backup(deletionTimestamp="2026-01-01T00:00:00Z")
    _, ops = mutate(server, obj, operation="UPDATE", old=obj)
    assert ops == []


def test_v1beta1_review_is_answered_in_v1beta1(server):
    res = server.post("/v1/webhook/mutation", review(system_backup(), version="admission.k8s.io/v1beta1"))
    body = res.json()
    assert body["apiVersion"] == "admission.k8s.io/v1beta1"
    assert body["response"]["uid"] == "u-1"


def test_failed_backup_delete_is_allowed_with_warning_without_cluster(server):
    backup = {"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
              "metadata": {"name": "b-1", "namespace": "longhorn-system"},
              "status": {"state": "Error", "backupTargetName": ""}}
    res = server.post("/v1/webhook/validation",
                      review(None, operation="DELETE", resource="backups", kind="Backup", old=backup))
    assert res.status_code == 200
    resp = res.json()["response"]
    assert resp["allowed"] is True
    assert any("only the custom resource" in w for w in resp["warnings"])


@pytest.mark.parametrize("body,ctype,status", [
    ("", "application/json", 400),
    ("{", "application/json", 400),
    ("[]", "application/json", 400),
    ('{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"x"}}', "application/json", 400),
    ('{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "application/json", 400),
    ("{}", "text/plain", 415),
])
def test_bad_input_gets_4xx_with_message_and_server_carries_on(server, body, ctype, status):
    res = server.post("/v1/webhook/validation", body, content_type=ctype)
    assert res.status_code == status
    assert res.text.strip()
    ok = server.post("/v1/webhook/mutation", review(system_backup(), uid="after"))
    assert ok.json()["response"]["uid"] == "after"


def test_huge_body_gets_413(server):
    res = server.post("/v1/webhook/mutation", b"{" + b" " * (8 * 1024 * 1024) + b"}")
    assert res.status_code == 413


def test_curl_verifies_the_san_and_reads_readyz(server):
    assert shutil.which("curl"), "curl is required"
    out = subprocess.run(["curl", "-sS", "--fail", "--cacert", server.ca, server.base + "/readyz"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    # The same listener dialled by a name outside the SANs must fail verification.
    out = subprocess.run(["curl", "-sS", "--cacert", server.ca, "--resolve",
                          f"not-in-san.example:{server.port}:127.0.0.1",
                          f"https://not-in-san.example:{server.port}/readyz"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0


@pytest.mark.parametrize("flag,accepted", [("-tls1_1", False), ("-tls1", False), ("-tls1_2", True),
                                           ("-tls1_3", True)])
def test_openssl_protocol_versions(server, flag, accepted):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", flag,
                          "-cipher", "ALL:@SECLEVEL=0", "-CAfile", server.ca],
                         input="", capture_output=True, text=True, timeout=20)
    handshake_ok = "Verify return code: 0 (ok)" in out.stdout and out.returncode == 0
    assert handshake_ok == accepted, out.stdout[-800:] + out.stderr[-800:]


@pytest.mark.parametrize("cipher,accepted", [("ECDHE-ECDSA-AES128-GCM-SHA256", True),
                                             ("ECDHE-ECDSA-AES128-SHA", False),
                                             ("ECDHE-ECDSA-AES256-SHA384", False)])
def test_only_aead_suites_on_tls12(server, cipher, accepted):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2",
                          "-cipher", cipher, "-CAfile", server.ca],
                         input="", capture_output=True, text=True, timeout=20)
    assert (out.returncode == 0) == accepted, out.stdout[-500:] + out.stderr[-500:]


def test_alpn_offers_http11_only(server):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}",
                          "-alpn", "h2,http/1.1", "-CAfile", server.ca],
                         input="", capture_output=True, text=True, timeout=20)
    assert "ALPN protocol: http/1.1" in out.stdout, out.stdout[-500:]


def test_metrics_endpoint_is_plain_http_prometheus_text(server):
    import requests
    res = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
    assert res.status_code == 200
    assert "backup_guard_admission_requests_total" in res.text
    assert "sb-1" not in res.text and "longhorn-system" not in res.text


def test_sigterm_stops_gracefully_with_exit_0(tmp_path):
    import os
    from conftest import Server
    s = Server(os.environ.get("BACKUP_GUARD_BIN", "build/backup-guard"), str(tmp_path))
    assert s.post("/v1/webhook/mutation", review(system_backup())).status_code == 200
    assert s.stop() == 0
