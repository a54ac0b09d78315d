"""A real Prometheus (Debian's package, run as our own process) scrapes backup-guard's /metrics.

After known admission traffic through the API server, Prometheus' HTTP API returns our counters
with the documented labels and the same values as the exposition, no label value carries a
namespace or an object name, and `promtool check metrics` accepts the exposition. The chart's
alert rules file is loaded into the same Prometheus and must evaluate cleanly on the real series.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from apicheck import assert_healthy, webhook_health
from opslib import (MUTATOR_NAME, VALIDATOR_NAME, BackupGuard, Kube, Metrics, Prometheus,
                    register_webhooks, scrape, wait_until)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "backup-guard")
RULES = os.path.join(CHART, "files", "prometheus-rules.yaml")
ADMISSION = "backup_guard_admission_requests_total"
ADMISSION_LABELS = {"__name__", "instance", "job", "webhook", "kind", "operation", "allowed", "code"}
PREFIX = "prom-"  # every object this module makes is named prom-...


def rules_file() -> str | None:
    """The chart's rules, when the chart has them (tests/chart checks them with promtool)."""
    return RULES if os.path.isfile(RULES) else None


@pytest.fixture(scope="module")
def monitored(binary, kube, kubeconfig, register_sh, state_dir, load_namespace):
    """backup-guard in file mode (a 24 h certificate, processor and leader election on) with the
    webhooks pointing at it, and Prometheus scraping it every second."""
    work = os.path.join(state_dir, "prometheus")
    certs = os.path.join(work, "certs")
    subprocess.run([binary, "certs", "generate", "--out", certs, "--dns", "localhost", "--ip",
                    "127.0.0.1", "--validity", "24h"], check=True, capture_output=True)
    server = BackupGuard(binary, "monitored", work,
                         ["--tls-cert-file", f"{certs}/tls.crt", "--tls-key-file", f"{certs}/tls.key",
                          "--kubeconfig", kubeconfig, "--leader-election-id", "ops-prometheus",
                          "--leader-election-lease-duration", "4s",
                          "--leader-election-renew-deadline", "3s",
                          "--leader-election-retry-period", "1s"])
    prom = Prometheus(work, f"127.0.0.1:{server.metrics_port}", rules_file())
    register_webhooks(register_sh, kubeconfig, server.url, f"{certs}/ca.crt")
    try:
        server.start()
        server.wait_ready()
        prom.start()
        try:
            wait_until("Prometheus /-/ready", prom.ready, 60, 0.5)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{prom.log_tail()}") from None
        wait_until("Prometheus to scrape backup-guard (up == 1)",
                   lambda: [r for r in prom.query('up{job="backup-guard"}') if r["value"][1] == "1"],
                   30, 0.5)
        yield server, prom
    finally:
        prom.stop()
        rc = server.stop()
        assert rc in (0, None), f"backup-guard exited with {rc} on SIGTERM:\n{server.log_tail(15)}"


def drive_traffic(kube: Kube, ns: str) -> dict[tuple, int]:
    """Known admission requests; returns the expected counts by (webhook, kind, operation,
    allowed, code)."""
    sbs, backups, targets = (kube.lh(ns, p) for p in ("systembackups", "backups", "backuptargets"))
    expected: dict[tuple, int] = {}

    def add(key, n=1):
        expected[key] = expected.get(key, 0) + n

    for i in range(5):
        kube.ok("POST", sbs, params={"dryRun": "All"},
                body={"apiVersion": "longhorn.io/v1beta2", "kind": "SystemBackup",
                      "metadata": {"name": f"{PREFIX}sb-{i}"}, "spec": {}})
        add(("mutation", "SystemBackup", "CREATE", "true", "200"))
        add(("validation", "SystemBackup", "CREATE", "true", "200"))
    kube.ok("POST", backups, body={"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                                   "metadata": {"name": f"{PREFIX}backup",
                                                "labels": {"backup-volume": f"{PREFIX}volume"}},
                                   "spec": {"snapshotName": f"{PREFIX}snap"}})
    add(("validation", "Backup", "CREATE", "true", "200"))
    for _ in range(3):
        r = kube.request("POST", backups, params={"dryRun": "All"},
                         body={"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                               "metadata": {"name": f"{PREFIX}unlabelled"}, "spec": {}})
        assert r.status_code == 422, r.text
        add(("validation", "Backup", "CREATE", "false", "422"))
    for _ in range(3):
        kube.ok("DELETE", f"{backups}/{PREFIX}backup", params={"dryRun": "All"})
        add(("validation", "Backup", "DELETE", "true", "200"))
    for _ in range(2):
        r = kube.request("DELETE", f"{targets}/default", params={"dryRun": "All"})
        assert r.status_code == 403, r.text
        add(("validation", "BackupTarget", "DELETE", "false", "403"))
    kube.ok("DELETE", f"{backups}/{PREFIX}backup")
    add(("validation", "Backup", "DELETE", "true", "200"))
    return expected


def key_of(labels: dict) -> tuple:
    return tuple(labels.get(k, "") for k in ("webhook", "kind", "operation", "allowed", "code"))


def test_prometheus_scrapes_admission_counters(kube, monitored, load_namespace, figures):
    server, prom = monitored
    api_before = kube.apiserver_metrics()
    answered_before = {key_of(l): v for l, v in server.metrics().select(ADMISSION)}
    sent = drive_traffic(kube, load_namespace)
    api_after = kube.apiserver_metrics()
    exposition = scrape(server.metrics_url)
    direct = {key_of(l): v for l, v in Metrics.parse(exposition).select(ADMISSION)}

    # Prometheus catches up with the exposition within a few scrapes.
    def caught_up():
        got = {key_of(r["metric"]): float(r["value"][1]) for r in prom.query(ADMISSION)}
        return got if got == direct else None
    try:
        in_prom = wait_until("Prometheus to hold the same admission counters as /metrics",
                             caught_up, 20, 0.5)
    except AssertionError as e:
        got = {key_of(r["metric"]): r["value"][1] for r in prom.query(ADMISSION)}
        raise AssertionError(f"{e}\n/metrics: {direct}\nPrometheus: {got}") from None
    series = prom.query(ADMISSION)
    by_webhook = {r["metric"]["webhook"]: float(r["value"][1])
                  for r in prom.query(f"sum by (webhook) ({ADMISSION})")}
    health = webhook_health(api_before, api_after)
    figures["prometheus"] = {
        "admission_series": len(series),
        "admission_requests_by_webhook": by_webhook,
        "webhook_calls_sent_by_apiserver_during_traffic": health["requests"],
        "exposition_lines": len(exposition.splitlines()),
    }

    # The documented labels, nothing else, with values from the documented sets.
    for r in series:
        m = r["metric"]
        assert set(m) == ADMISSION_LABELS, f"unexpected label set {sorted(m)}"
        assert m["job"] == "backup-guard" and m["instance"] == f"127.0.0.1:{server.metrics_port}"
        assert m["webhook"] in ("mutation", "validation"), m
        assert m["operation"] in ("CREATE", "UPDATE", "DELETE", "CONNECT"), m
        assert m["allowed"] in ("true", "false"), m
        assert m["code"].isdigit(), m
        assert m["kind"] in ("SystemBackup", "Backup", "BackupTarget"), m
    # Our traffic is counted exactly (the server is fresh, but count from before to be safe).
    for key, n in sent.items():
        assert in_prom.get(key, 0) - answered_before.get(key, 0) == n, \
            f"{key}: Prometheus has {in_prom.get(key)} (before {answered_before.get(key, 0)}), sent {n}"
    assert_healthy(health, {VALIDATOR_NAME: {"422": 3, "403": 2}})
    for webhook, hook_name in (("mutation", MUTATOR_NAME), ("validation", VALIDATOR_NAME)):
        before = sum(v for k, v in answered_before.items() if k[0] == webhook)
        assert by_webhook.get(webhook, 0) - before == health["requests"][hook_name], \
            f"{webhook}: Prometheus counted {by_webhook.get(webhook, 0) - before}, the API server " \
            f"sent {health['requests'][hook_name]}"
    hist = prom.query("sum(backup_guard_admission_duration_seconds_count)")
    assert hist and float(hist[0]["value"][1]) == sum(direct.values()), \
        f"duration histogram count {hist} differs from the request counters {sum(direct.values())}"

    # No label value anywhere names a namespace or an object.
    leaks = []
    for r in prom.query('{__name__=~"backup_guard_.+"}'):
        for k, v in r["metric"].items():
            if load_namespace in v or PREFIX in v or "longhorn-system" in v:
                leaks.append(f"{r['metric']['__name__']}{{{k}={v!r}}}")
    assert not leaks, f"label values carry namespaces or object names: {leaks}"

    # Other families are there too, with the documented labels.
    for expr, labels in (("backup_guard_certificate_expiry_timestamp_seconds", {"certificate"}),
                         ("backup_guard_certificate_reloads_total", {"result"}),
                         ("backup_guard_build_info", {"version"}),
                         ("backup_guard_leader", set()),
                         ("backup_guard_admission_requests_in_flight", set())):
        got = prom.query(expr)
        assert got, f"Prometheus has no {expr}"
        for r in got:
            assert set(r["metric"]) - {"__name__", "instance", "job"} == labels, (expr, r["metric"])
    assert prom.query('backup_guard_certificate_reloads_total{result="success"} >= 1')
    wait_until("the only replica to hold the Lease (backup_guard_leader == 1 in Prometheus)",
               lambda: prom.query("backup_guard_leader == 1"), 15, 0.5)

    # promtool accepts the exposition as it is.
    check = subprocess.run(["promtool", "check", "metrics"], input=exposition, text=True,
                           capture_output=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
        f"promtool check metrics (exit {check.returncode}):\n{check.stdout}{check.stderr}"
    targets = prom.api("targets")["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")], targets


def test_chart_alert_rules_evaluate_on_real_metrics(monitored, figures):
    """The chart's alert rules, loaded into the same Prometheus, evaluate without errors on the
    real series; the certificate rule sees the 24 h certificate (pending: its `for` is 15m)."""
    if rules_file() is None:
        if os.path.isdir(CHART):
            pytest.fail(f"{CHART} exists but has no files/prometheus-rules.yaml", pytrace=False)
        pytest.skip("no Helm chart in this tree, so no alert rules to load")
    server, prom = monitored
    check = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True)
    assert check.returncode == 0, f"promtool check rules:\n{check.stdout}{check.stderr}"

    def evaluated():
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") and
                                      not r["lastEvaluation"].startswith("0001") for r in rules) else None
    rules = wait_until("every chart rule to be evaluated", evaluated, 20, 0.5)
    time.sleep(1.5)  # one more evaluation on fresh series
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, f"rules that do not evaluate: {bad}"
    states = {r["name"]: r.get("state", "") for r in rules}
    figures["prometheus_rules"] = {"rules": len(rules), "states": states}
    expiring = [r for r in rules if r["type"] == "alerting" and
                "backup_guard_certificate_expiry_timestamp_seconds" in r["query"]]
    assert expiring, "no alert rule on backup_guard_certificate_expiry_timestamp_seconds"
    assert any(r["state"] in ("pending", "firing") for r in expiring), \
        f"a 24 h certificate should trip the expiry alert: {[(r['name'], r['state']) for r in expiring]}"
    errors = [r for r in rules if "code=~\"5..\"" in r["query"] and r["state"] != "inactive"]
    assert not errors, f"webhook error alerts active without any 5xx: {[r['name'] for r in errors]}"
