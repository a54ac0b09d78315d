"""What a client sees when the backup-guard process is down: the configured failurePolicy.

The webhook configurations are pointed at a second backup-guard (started by the factory fixture),
which is then stopped; the session server keeps running. The `webhook_configs` fixture puts the
configurations back and waits until the API server calls the session server again.
These tests run after all the others (marker `disruptive`)."""

import pytest
import requests

from bg_e2e import (
    FINALIZER, MUTATOR, VALIDATOR, Metrics, api_error, error_message, unique, wait_until,
)

pytestmark = pytest.mark.disruptive


def _point_webhooks_at(webhook_configs, namespace, server, **changes):
    """Points both webhooks at server and waits until the API server calls it for both."""
    webhook_configs.set(base_url=server.url, **changes)

    def called():
        webhook_configs.probe(namespace)
        m = Metrics(requests.get(f"{server.metrics_url}/metrics", timeout=5).text)
        return all(m.sum("backup_guard_admission_requests_total", webhook=w) > 0
                   for w in ("mutation", "validation"))

    wait_until(called, timeout=30, message=f"the API server to call backup-guard at {server.url}")


@pytest.fixture
def stopped_webhook(lh, webhook_configs, backup_guard_factory):
    """The webhooks point at a backup-guard that served them and then stopped."""
    lh.default_target()
    spare = backup_guard_factory()
    # the API server really calls the spare server (its configuration cache is up to date) ...
    _point_webhooks_at(webhook_configs, lh.namespace, spare)
    # ... until it stops
    spare.stop()
    return webhook_configs


def test_with_failure_policy_fail_a_stopped_webhook_refuses_system_backup_create(
        lh, stopped_webhook, apiserver_metrics):
    stopped_webhook.wait_state(lh.namespace, mutation="refused", validation="failed")
    before = apiserver_metrics()
    name = unique("sb")

    e = api_error(lh.create, lh.body("SystemBackup", name))

    msg = error_message(e)
    assert e.status == 500, (e.status, msg)
    assert "failed calling webhook" in msg and MUTATOR in msg, msg
    assert lh.get_or_none("SystemBackup", name) is None
    after = apiserver_metrics()
    rejected = "apiserver_admission_webhook_rejection_count"
    assert after.sum(rejected, name=MUTATOR, error_type="calling_webhook_error") > \
        before.sum(rejected, name=MUTATOR, error_type="calling_webhook_error")
    fail_open = "apiserver_admission_webhook_fail_open_count"
    assert after.sum(fail_open, name=MUTATOR) == before.sum(fail_open, name=MUTATOR)


def test_with_failure_policy_fail_a_stopped_webhook_refuses_backup_create(lh, stopped_webhook):
    stopped_webhook.wait_state(lh.namespace, mutation="refused", validation="failed")
    name = unique("backup")

    e = api_error(lh.create, lh.body("Backup", name, labels={"backup-volume": "vol"},
                                     spec={"snapshotName": "snap"}))

    msg = error_message(e)
    assert "failed calling webhook" in msg and VALIDATOR in msg, msg
    assert lh.get_or_none("Backup", name) is None


def test_with_failure_policy_ignore_a_stopped_webhook_lets_system_backup_through_unmutated(
        lh, stopped_webhook, apiserver_metrics):
    stopped_webhook.set(failure_policy="Ignore")
    stopped_webhook.wait_state(lh.namespace, mutation="passed", validation="passed")
    before = apiserver_metrics()
    name = unique("sb")

    created = lh.create(lh.body("SystemBackup", name))

    assert FINALIZER not in (created["metadata"].get("finalizers") or [])
    assert "ownerReferences" not in created["metadata"]
    assert "volumeBackupPolicy" not in (created.get("spec") or {})
    after = apiserver_metrics()
    fail_open = "apiserver_admission_webhook_fail_open_count"
    for hook in (MUTATOR, VALIDATOR):
        assert after.sum(fail_open, name=hook) > before.sum(fail_open, name=hook), hook


def test_after_restore_the_session_server_mutates_again(lh, webhook_configs,
                                                       backup_guard_factory):
    target = lh.default_target()
    spare = backup_guard_factory()
    _point_webhooks_at(webhook_configs, lh.namespace, spare, failure_policy="Ignore")
    spare.stop()
    webhook_configs.wait_state(lh.namespace, mutation="passed", validation="passed")

    webhook_configs.restore()
    webhook_configs.wait_active(lh.namespace)
    created = lh.create(lh.body("SystemBackup", unique("sb")))

    assert created["metadata"]["finalizers"] == [FINALIZER]
    assert created["metadata"]["ownerReferences"][0]["uid"] == target["metadata"]["uid"]


def test_the_api_server_reaches_a_restarted_server(lh, backup_guard):
    target = lh.default_target()
    assert lh.create(lh.body("SystemBackup", unique("sb")))["metadata"]["finalizers"]

    assert backup_guard.stop() == 0, f"backup-guard did not exit cleanly:\n{backup_guard.log_tail()}"
    try:
        e = api_error(lh.create, lh.body("SystemBackup", unique("sb")))
        assert "failed calling webhook" in error_message(e)
    finally:
        backup_guard.start()

    # the API server's kept-alive connections to the old process are gone; new ones work
    created = lh.create(lh.body("SystemBackup", unique("sb")))
    assert created["metadata"]["finalizers"] == [FINALIZER]
    assert created["metadata"]["ownerReferences"][0]["uid"] == target["metadata"]["uid"]
