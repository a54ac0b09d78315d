"""Checks of the e2e harness itself once the webhooks are registered: the backup_guard fixture
starts a ready server, and the webhook configurations are what docs/CONTRACT.md requires."""

import base64

import requests
from kubernetes import client


def test_server_is_ready(backup_guard):
    r = requests.get(f"{backup_guard.url}/readyz", verify=str(backup_guard.ca_file), timeout=5)
    assert r.status_code == 200
    assert backup_guard.running()


def test_webhook_configurations(api_client, backup_guard):
    adm = client.AdmissionregistrationV1Api(api_client)
    mutating = adm.read_mutating_webhook_configuration("backup-guard-mutating")
    validating = adm.read_validating_webhook_configuration("backup-guard-validating")
    ca = backup_guard.ca_file.read_bytes()

    for cfg, path in ((mutating, "/v1/webhook/mutation"), (validating, "/v1/webhook/validation")):
        (hook,) = cfg.webhooks
        assert hook.client_config.url == backup_guard.url + path
        assert base64.b64decode(hook.client_config.ca_bundle) == ca
        assert hook.side_effects == "None"
        assert hook.admission_review_versions == ["v1"]
        assert hook.timeout_seconds == 10
        assert hook.failure_policy == "Fail"
        assert hook.match_policy == "Equivalent"
        (expr,) = hook.namespace_selector.match_expressions
        assert (expr.key, expr.operator, expr.values) == \
            ("kubernetes.io/metadata.name", "NotIn", ["kube-system"])

    rules = lambda hook: sorted((r.resources[0], tuple(r.operations)) for r in hook.rules)  # noqa: E731
    assert rules(mutating.webhooks[0]) == [("systembackups", ("CREATE", "UPDATE"))]
    assert rules(validating.webhooks[0]) == [
        ("backupbackingimages", ("DELETE",)),
        ("backups", ("CREATE", "DELETE")),
        ("backuptargets", ("DELETE",)),
        ("systembackups", ("CREATE",)),
    ]
    for hook in (mutating.webhooks[0], validating.webhooks[0]):
        for r in hook.rules:
            assert (r.api_groups, r.api_versions) == (["longhorn.io"], ["v1beta2"])
