"""The Grafana dashboard (issue 15): a ConfigMap for Grafana's dashboard sidecar, off by default,
holding files/grafana-dashboard.json as it is; and the dashboard itself is well formed: every panel
reads the chosen data source and scopes its queries to the chosen job and instance, and it covers
what an operator looks at. tests/ops/test_dashboard_queries.py runs every query against a real
Prometheus scraping a real server."""

from __future__ import annotations

import json
import re

import pytest

from chart_tools import CHART_DIR, VALUE_SETS, find, kinds

DASHBOARD_FILE = CHART_DIR / "files" / "grafana-dashboard.json"
NAMESPACE = "longhorn-system"


def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in all_panels(dash) for t in p.get("targets", [])]


def test_grafana_dashboard_is_off_by_default(helm):
    assert "ConfigMap" not in kinds(helm.render())


def test_grafana_dashboard_config_map_carries_the_file_and_the_sidecar_label(helm):
    objects = helm.render("--set", "monitoring.grafanaDashboard.enabled=true")
    cm = find(objects, "ConfigMap", "bg-backup-guard-dashboard")
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == "bg"
    assert "annotations" not in cm["metadata"]
    assert list(cm["data"]) == ["backup-guard.json"]
    assert json.loads(cm["data"]["backup-guard.json"]) == dashboard()


def test_grafana_dashboard_namespace_labels_and_annotations_follow_the_values(helm):
    objects = helm.render("--set", "monitoring.grafanaDashboard.enabled=true",
                          "--set", "monitoring.grafanaDashboard.namespace=monitoring",
                          "--set", "monitoring.grafanaDashboard.labels.team=storage",
                          "--set", "monitoring.grafanaDashboard.annotations.grafana_folder=Storage")
    cm = find(objects, "ConfigMap", "bg-backup-guard-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["team"] == "storage"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    # A sidecar configured with another label value: the user's value replaces "1", once.
    objects = helm.render("--set", "monitoring.grafanaDashboard.enabled=true",
                          "--set", "monitoring.grafanaDashboard.labels.grafana_dashboard=backup")
    text_labels = find(objects, "ConfigMap", "bg-backup-guard-dashboard")["metadata"]["labels"]
    assert text_labels["grafana_dashboard"] == "backup"


@pytest.mark.parametrize("args,message", [
    (["--set", "monitoring.grafanaDashboard.enable=true"], "additional properties 'enable'"),
    (["--set", "monitoring.grafanaDashboard.namespace=Not_A_Namespace"],
     "/monitoring/grafanaDashboard/namespace"),
    (["--set", "monitoring.grafanaDashboard.enabled=yes"], "/monitoring/grafanaDashboard/enabled"),
], ids=["misspelt key", "bad namespace", "not a boolean"])
def test_grafana_dashboard_values_are_checked_by_the_schema(helm, args, message):
    proc = helm("template", "bg", CHART_DIR, "--namespace", NAMESPACE, *args, check=False)
    assert proc.returncode != 0, f"helm template {args} should fail"
    assert message in proc.stderr, proc.stderr


def test_monitoring_value_set_enables_the_dashboard():
    text = dict(VALUE_SETS)["monitoring"].read_text()
    assert "grafanaDashboard:" in text and "enabled: true" in text


def test_grafana_dashboard_panels_read_the_chosen_data_source_and_job():
    dash = dashboard()
    assert dash["uid"] == "backup-guard" and dash["title"] == "backup-guard"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["query"] == "label_values(backup_guard_build_info, job)"
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".+"
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in all_panels(dash):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            selectors = re.findall(r"\{([^}]*)\}", t["expr"])
            assert selectors, t["expr"]
            for s in selectors:
                assert 'job=~"$job"' in s and 'instance=~"$instance"' in s, \
                    f"{p['title']!r}: a selector without the job and instance variables: {s}"


def test_grafana_dashboard_covers_admission_processor_certificates_and_the_api():
    queries = "\n".join(exprs(dashboard()))
    titles = {p["title"] for p in all_panels(dashboard())}
    for metric in ("backup_guard_admission_requests_total",
                   "backup_guard_admission_duration_seconds_bucket",
                   "workqueue_depth", "backup_guard_finalizer_releases_total",
                   "backup_guard_objects_deleting", "backup_guard_objects_deleting_oldest_age_seconds",
                   "backup_guard_certificate_expiry_timestamp_seconds",
                   "certwatcher_read_certificate_errors_total",
                   "backup_guard_kube_api_reachable", "rest_client_requests_total",
                   "rest_client_request_duration_seconds_bucket"):
        assert re.search(rf"\b{metric}\b", queries), f"no panel queries {metric}"
    assert 'sum by (webhook, code) (rate(backup_guard_admission_requests_total' in queries
    assert "sum by (kind, reason) (rate(backup_guard_finalizer_releases_total" in queries
    for title in ("Admission requests", "Admission latency",
                  "Denied and failed admission requests by code", "Processor queue",
                  "Finalizers released by reason", "Objects being deleted",
                  "Oldest deletion waiting", "Certificate expires in", "API reachable"):
        assert title in titles
