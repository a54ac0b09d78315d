"""Metrics of normal traffic, seen from both sides: the API server's own admission webhook metrics
show our two webhooks being called, never failing to be called and never failing open; our
/metrics counts exactly the AdmissionReview requests the API server sent."""

import time

import requests
import yaml
from kubernetes import client

from bg_e2e import (
    DELETE_TARGET_ANNOTATION, MUTATING_CONFIG, MUTATOR, VALIDATING_CONFIG, VALIDATOR, Metrics,
    api_error, unique,
)

OURS = (MUTATOR, VALIDATOR)


def _normal_traffic(lh):
    """Every admission rule once, allowed and denied, through the API server."""
    api_error(lh.create, lh.body("SystemBackup", unique("sb")))  # no target yet: denied
    lh.default_target()
    sb = unique("sb")
    lh.create(lh.body("SystemBackup", sb))  # mutating CREATE, validating CREATE
    lh.patch("SystemBackup", sb, {"metadata": {"labels": {"touched": "yes"}}})  # mutating UPDATE
    lh.create(lh.body("SystemBackup", unique("sb")), dry_run="All")
    api_error(lh.create, lh.body("Backup", unique("b"), spec={"snapshotName": "s"}))  # 422
    # (an unknown backupMode never reaches a webhook: the engine's CRD schema refuses it)
    failed = unique("b-failed")
    lh.failed_backup(failed)  # validating CREATE allowed
    lh.delete("Backup", failed)  # validating DELETE, allowed with a warning
    api_error(lh.delete, "BackupTarget", "default")  # 403
    lh.patch("BackupTarget", "default",
             {"metadata": {"annotations": {DELETE_TARGET_ANNOTATION: "true"}}})
    lh.delete("SystemBackup", sb)  # deletionTimestamp set, finalizer holds it
    # An UPDATE of an object being deleted: the mutating webhook's matchConditions keep it from
    # the webhook (test_match_conditions.py).
    lh.strip_finalizers("SystemBackup", sb)
    lh.delete("BackupTarget", "default")  # validating DELETE, allowed
    return 3  # denials


def _failure_policies(api_client):
    adm = client.AdmissionregistrationV1Api(api_client)
    hooks = adm.read_mutating_webhook_configuration(MUTATING_CONFIG).webhooks + \
        adm.read_validating_webhook_configuration(VALIDATING_CONFIG).webhooks
    return {h.name: h.failure_policy for h in hooks}


def test_apiserver_metrics_show_our_webhooks_called_never_failing_or_failing_open(
        lh, apiserver_metrics, api_client):
    assert _failure_policies(api_client) == {MUTATOR: "Fail", VALIDATOR: "Fail"}
    before = apiserver_metrics()

    denials = _normal_traffic(lh)

    after = apiserver_metrics()
    assert _failure_policies(api_client) == {MUTATOR: "Fail", VALIDATOR: "Fail"}

    def delta(metric, /, **labels):
        return after.sum(metric, **labels) - before.sum(metric, **labels)

    duration = "apiserver_admission_webhook_admission_duration_seconds_count"
    assert delta(duration, name=MUTATOR, type="admit", operation="CREATE") >= 2
    assert delta(duration, name=MUTATOR, type="admit", operation="UPDATE") >= 1
    assert delta("apiserver_admission_match_condition_exclusions_total", name=MUTATOR,
                 type="admit", operation="UPDATE") >= 1
    assert delta(duration, name=VALIDATOR, type="validating", operation="CREATE") >= 5
    assert delta(duration, name=VALIDATOR, type="validating", operation="DELETE") >= 3
    assert after.select(duration, name=MUTATOR) and after.select(duration, name=VALIDATOR)

    for name in OURS:
        for error_type in ("calling_webhook_error", "apiserver_internal_error"):
            assert delta("apiserver_admission_webhook_rejection_count", name=name,
                         error_type=error_type) == 0, \
                (name, error_type, after.select("apiserver_admission_webhook_rejection_count",
                                                name=name))
        assert delta("apiserver_admission_webhook_fail_open_count", name=name) == 0, \
            after.select("apiserver_admission_webhook_fail_open_count", name=name)
    # our denials are webhook answers (no_error) with the codes the server chose
    assert delta("apiserver_admission_webhook_rejection_count", name=VALIDATOR,
                 error_type="no_error") >= denials
    codes = {labels["code"] for labels, _ in after.select(
        "apiserver_admission_webhook_request_total", name=VALIDATOR)}
    assert {"200", "403", "422"} <= codes, codes
    for name in OURS:
        for labels, value in after.select("apiserver_admission_webhook_request_total", name=name):
            if labels["code"] not in ("200", "403", "422"):
                same = [v for l, v in before.select("apiserver_admission_webhook_request_total",
                                                    **labels)]
                assert value == sum(same), f"{name} answered {labels['code']}: {labels}"


def test_our_metrics_count_exactly_the_requests_the_api_server_sent(lh, backup_guard,
                                                                      apiserver_metrics):
    def ours() -> Metrics:
        r = requests.get(f"{backup_guard.metrics_url}/metrics", timeout=5)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return Metrics(r.text)

    target = lh.default_target()
    assert target
    our_before, api_before = ours(), apiserver_metrics()

    name = unique("sb-counted")
    lh.create(lh.body("SystemBackup", name))
    lh.patch("SystemBackup", name, {"metadata": {"labels": {"n": "1"}}})
    lh.patch("SystemBackup", name, {"metadata": {"labels": {"n": "2"}}})

    our_after, api_after = ours(), apiserver_metrics()
    total = "backup_guard_admission_requests_total"

    def our_delta(**labels):
        return our_after.sum(total, **labels) - our_before.sum(total, **labels)

    assert our_delta(webhook="mutation", kind="SystemBackup", operation="CREATE",
                     allowed="true") == 1
    assert our_delta(webhook="mutation", kind="SystemBackup", operation="UPDATE",
                     allowed="true") == 2
    assert our_delta(webhook="validation", kind="SystemBackup", operation="CREATE",
                     allowed="true") == 1
    # both sides agree on how many calls there were
    for webhook, hook_name in (("mutation", MUTATOR), ("validation", VALIDATOR)):
        sent = api_after.sum("apiserver_admission_webhook_request_total", name=hook_name) - \
            api_before.sum("apiserver_admission_webhook_request_total", name=hook_name)
        assert our_delta(webhook=webhook) == sent, (webhook, sent)

    hist = "backup_guard_admission_duration_seconds_count"
    assert our_after.sum(hist, webhook="mutation") - our_before.sum(hist, webhook="mutation") == 3
    assert our_after.sum("backup_guard_admission_requests_in_flight") == 0
    assert our_after.select("backup_guard_build_info")
    # no label carries a namespace or an object name
    assert lh.namespace not in our_after.text and name not in our_after.text


def test_our_metrics_label_denials_with_their_code(lh, backup_guard):
    def scrape():
        return Metrics(requests.get(f"{backup_guard.metrics_url}/metrics", timeout=5).text)

    before = scrape()
    api_error(lh.create, lh.body("Backup", unique("b"), spec={"snapshotName": "s"}))
    api_error(lh.create, lh.body("SystemBackup", unique("sb")))
    after = scrape()

    def delta(**labels):
        t = "backup_guard_admission_requests_total"
        return after.sum(t, **labels) - before.sum(t, **labels)

    assert delta(webhook="validation", kind="Backup", operation="CREATE", allowed="false",
                 code="422") == 1
    assert delta(webhook="validation", kind="SystemBackup", operation="CREATE", allowed="false",
                 code="403") == 1
    assert delta(webhook="mutation", kind="SystemBackup", operation="CREATE") == 1


def test_standard_families_of_any_controller_are_exported(lh_system, backup_guard):
    """process_*, client-go's workqueue_* with the queue's name and leader_election_master_status:
    the families dashboards and alerts written for any controller read."""
    def scrape():
        return Metrics(requests.get(f"{backup_guard.metrics_url}/metrics", timeout=5).text)

    m = scrape()
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                   "process_start_time_seconds"):
        assert m.has(family), family
    assert m.sum("process_resident_memory_bytes") > 1e6
    assert 0 < m.sum("process_open_fds") <= m.sum("process_max_fds")
    assert abs(m.sum("process_start_time_seconds") - time.time()) < 3600
    for family in ("workqueue_depth", "workqueue_adds_total", "workqueue_retries_total",
                   "workqueue_unfinished_work_seconds",
                   "workqueue_longest_running_processor_seconds",
                   "workqueue_queue_duration_seconds_count", "workqueue_work_duration_seconds_count"):
        assert m.select(family, name="backup-guard"), family
    # The session server's processor holds its lease.
    statuses = [v for _, v in m.select("leader_election_master_status")]
    assert statuses == [1.0], m.select("leader_election_master_status")
    # Work goes through the queue of the session server's processor (in longhorn-system): adds
    # and work durations are counted.
    probe = f"metrics-probe-{int(time.time() * 1000) % 100000}"
    lh_system.create(lh_system.body("BackupVolume", probe,
                                    spec={"backupTargetName": "none", "volumeName": probe}))
    lh_system.delete("BackupVolume", probe)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = scrape()
        if m.sum("workqueue_adds_total", name="backup-guard") > 0 and \
                m.sum("workqueue_work_duration_seconds_count", name="backup-guard") > 0:
            break
        time.sleep(0.5)
    assert m.sum("workqueue_adds_total", name="backup-guard") > 0
    assert m.sum("workqueue_work_duration_seconds_count", name="backup-guard") > 0


def test_rest_client_metrics_count_the_processors_api_calls(lh_system, backup_guard, kubeconfig):
    """client-go's rest_client_requests_total{code,method,host} and
    rest_client_request_duration_seconds{verb,host}: the processor's release of a deleted object
    is a PATCH answered 200, counted under the API server's host:port; no other label exists."""
    with open(kubeconfig) as f:
        server = yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    host = server.split("://", 1)[1].split("/", 1)[0]

    def scrape():
        return Metrics(requests.get(f"{backup_guard.metrics_url}/metrics", timeout=5).text)

    def patches(m):
        return m.sum("rest_client_requests_total", code="200", method="PATCH", host=host)

    before = patches(scrape())
    probe = f"rest-probe-{int(time.time() * 1000) % 100000}"
    volume = lh_system.body("BackupVolume", probe,
                            spec={"backupTargetName": "none", "volumeName": probe})
    volume["metadata"]["finalizers"] = ["longhorn.io"]
    lh_system.create(volume)
    lh_system.delete("BackupVolume", probe)  # its target is gone: the processor releases it
    deadline = time.monotonic() + 15
    m = scrape()
    while patches(m) <= before and time.monotonic() < deadline:
        time.sleep(0.5)
        m = scrape()
    assert patches(m) > before, m.select("rest_client_requests_total")
    requests_series = m.select("rest_client_requests_total")
    assert requests_series and all(set(labels) == {"code", "method", "host"} and
                                   labels["host"] == host for labels, _ in requests_series)
    assert m.select("rest_client_requests_total", code="200", method="GET", host=host)
    durations = m.select("rest_client_request_duration_seconds_count")
    assert durations and all(set(labels) == {"verb", "host"} for labels, _ in durations)
    assert m.sum("rest_client_request_duration_seconds_count", verb="PATCH", host=host) > 0
