"""Every PromQL query of the chart's Grafana dashboard (files/grafana-dashboard.json) and of its
PrometheusRule (files/prometheus-rules.yaml) returns data from a real Prometheus scraping a real
backup-guard under load.

The server runs in file mode (kubelet's symlink layout, so a broken pair can be swapped in) with the
processor on, in its own namespace whose `default` BackupTarget is available. While admission load
runs through the API server, the test provokes what some queries need before they have a series:
  - denials (422 from the load, 403 for deleting the default BackupTarget);
  - finalizer releases: Backups that never uploaded are created and deleted throughout, and the
    processor releases them;
  - a deletion the processor must leave to the engine (a Ready SystemBackup of an available
    target), so `objects_deleting` and its age are real;
  - a certificate read error (a mismatched pair, then a good one again).

Grafana's variables are resolved as Grafana would: `$job` from its own `label_values` query,
`$instance` as "All" (its allValue), `$__rate_interval` as 20s (scrapes are every second).

Every query must return at least one series with a finite value. Alert expressions whose condition
cannot come true in a one-minute test are the only exceptions, each named in RULE_STANDINS with why
and with the check that replaces it.
"""
from __future__ import annotations

import json
import math
import os
import re
import time

import pytest
import yaml

from opslib import (VALIDATOR_NAME, AdmissionLoad, BackupGuard, Kube, KubeletDir, OpensslCa,
                    Prometheus, default_target, drop_namespace, register_webhooks, wait_until)
from bgtest.procs import Loop  # noqa: E402 - tests/ is on sys.path after opslib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "backup-guard")
DASHBOARD = os.path.join(CHART, "files", "grafana-dashboard.json")
RULES = os.path.join(CHART, "files", "prometheus-rules.yaml")
NS = "ops-dashboard"
LEASE = "ops-dashboard"
JOB = "backup-guard"
RATE_INTERVAL = "20s"
MERGE = "application/merge-patch+json"


# ---- the queries ----------------------------------------------------------------------------------

def dashboard() -> dict:
    with open(DASHBOARD) as f:
        return json.load(f)


def panel_targets(dash: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' nested panels included."""
    out = []
    for p in dash["panels"]:
        for q in [p] + p.get("panels", []):
            for t in q.get("targets", []):
                out.append((q["title"], t["expr"]))
    return out


def rules() -> list[dict]:
    with open(RULES) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variable syntaxes: $name, ${name}, ${name:raw}, [[name]]."""
    def value(name: str) -> str:
        if name not in variables:
            raise AssertionError(f"unknown dashboard variable ${name} in {expr}")
        return variables[name]
    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}", lambda m: value(m.group(1)), expr)
    expr = re.sub(r"\[\[(\w+)\]\]", lambda m: value(m.group(1)), expr)
    return re.sub(r"\$(\w+)", lambda m: value(m.group(1)), expr)


def finite_values(result: list[dict]) -> list[float]:
    values = [float(r["value"][1]) for r in result]
    return [v for v in values if not math.isnan(v) and not math.isinf(v)]


# Alert rules whose condition the test cannot make true, with why, and the check that replaces
# "the expression returns data". Any other rule must return data as it is.
def _stuck_with_test_threshold(expr: str, held_seconds: float) -> str:
    lowered, n = re.subn(r">\s*600\s*$", f"> {max(1, int(held_seconds) - 5)}", expr.strip())
    assert n == 1, f"the stuck-deletion alert no longer ends in '> 600': {expr}"
    return lowered


RULE_STANDINS = {
    # Ten minutes of deletion cannot pass in a one-minute test: the same expression, with the
    # threshold lowered to the time the test has held its SystemBackup deleting, must find it.
    "BackupGuardObjectsStuckDeleting": (
        "its threshold is 10 minutes",
        lambda expr, bench: _stuck_with_test_threshold(expr, bench.held_seconds()),
        {"kind": "SystemBackup"}),
    # backup-guard answers 5xx only when a handler throws, which no request can make it do (a
    # malformed review is a 4xx, a failed lookup counts as absence): the rule's emptiness must be
    # the absence of 5xx answers (checked in the test), and the same expression on the 4xx
    # answers the test provokes must return them, so its metric, labels and grouping are right.
    "BackupGuardWebhookErrors": (
        "no request makes the server answer 5xx",
        lambda expr, bench: expr.replace('code=~"5.."', 'code=~"4.."'),
        {"webhook": "validation"}),
}


# ---- the bench ------------------------------------------------------------------------------------

class ReleaseLoad(Loop):
    """Creates and deletes, about once a second, a Backup that never uploaded (no status) and
    carries the longhorn.io finalizer: the processor must release each one (never-uploaded rule).
    A failed request is kept in `errors`."""

    def __init__(self, kube: Kube, ns: str):
        super().__init__()
        self.kube, self.ns = kube, ns
        self.created: list[str] = []
        self.n = 0

    def step(self):
        name = f"dash-release-{self.n}"
        self.n += 1
        r = self.kube.request("POST", self.kube.lh(self.ns, "backups"),
                              body={"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
                                    "metadata": {"name": name, "finalizers": ["longhorn.io"],
                                                 "labels": {"backup-volume": "dash-vol"}},
                                    "spec": {"snapshotName": "snap"}})
        if r.status_code != 201:
            self.errors.append(f"create {name}: {r.status_code} {r.text[:200]}")
        else:
            self.created.append(name)
            d = self.kube.request("DELETE", self.kube.lh(self.ns, "backups", name))
            if d.status_code not in (200, 202):
                self.errors.append(f"delete {name}: {d.status_code} {d.text[:200]}")


class Bench:
    def __init__(self, server: BackupGuard, prom: Prometheus, kube: Kube, kubelet: KubeletDir,
                 ca: OpensslCa):
        self.server, self.prom, self.kube, self.kubelet, self.ca = server, prom, kube, kubelet, ca
        self.held_since = 0.0

    def held_seconds(self) -> float:
        return time.monotonic() - self.held_since

    def server_value(self, metric: str, **labels) -> float:
        return self.server.metrics().sum(metric, **labels)


def make_target_available(kube: Kube, ns: str):
    default_target(kube, ns, "s3://dash-bucket@us-east-1/")
    kube.ok("PATCH", kube.lh(ns, "backuptargets", "default") + "/status",
            body={"status": {"available": True}}, content_type=MERGE)


def hold_a_deletion(kube: Kube, ns: str) -> str:
    """A Ready SystemBackup of the available default target, deleted: the engine deletes its data
    in the store, so backup-guard leaves its finalizer alone and it stays deleting."""
    name = "dash-ready"
    created = kube.ok("POST", kube.lh(ns, "systembackups"),
                      body={"apiVersion": "longhorn.io/v1beta2", "kind": "SystemBackup",
                            "metadata": {"name": name}, "spec": {}})
    assert "longhorn.io" in created["metadata"].get("finalizers", []), created["metadata"]
    kube.ok("PATCH", kube.lh(ns, "systembackups", name) + "/status",
            body={"status": {"state": "Ready", "version": "v1.10.0"}}, content_type=MERGE)
    kube.ok("DELETE", kube.lh(ns, "systembackups", name))
    return name


@pytest.fixture(scope="module")
def bench(binary, kube, kubeconfig, register_sh, state_dir, figures):
    work = os.path.join(state_dir, "dashboard")
    os.makedirs(work, exist_ok=True)
    ca = OpensslCa(os.path.join(work, "ca"))
    kubelet = KubeletDir(os.path.join(work, "tls"))
    kubelet.swap(*ca.leaf())
    make_target_available(kube, NS)
    server = BackupGuard(binary, "dashboard", work,
                         ["--tls-cert-file", kubelet.cert, "--tls-key-file", kubelet.key,
                          "--kubeconfig", kubeconfig, "--namespace", NS,
                          "--leader-election-id", LEASE, "--leader-election-lease-duration", "4s",
                          "--leader-election-renew-deadline", "3s",
                          "--leader-election-retry-period", "1s", "--resync-period", "5s"])
    prom = Prometheus(work, f"127.0.0.1:{server.metrics_port}", None, name="prometheus-dashboard")
    register_webhooks(register_sh, kubeconfig, server.url, ca.crt)
    b = Bench(server, prom, kube, kubelet, ca)
    load = AdmissionLoad(kube, NS, "dash", threads=2, rate=8)
    releases = ReleaseLoad(kube, NS)
    try:
        server.start()
        server.wait_ready()
        prom.start()
        wait_until("Prometheus /-/ready", prom.ready, 60, 0.5)
        wait_until("the server to hold the Lease",
                   lambda: b.server_value("leader_election_master_status", name=LEASE) == 1, 30, 0.5)
        load.start()
        releases.start()
        hold_a_deletion(kube, NS)
        b.held_since = time.monotonic()
        for _ in range(2):
            r = kube.request("DELETE", kube.lh(NS, "backuptargets", "default"),
                             params={"dryRun": "All"})
            assert r.status_code == 403 and VALIDATOR_NAME in r.text, r.text
        # A mismatched pair (the next leaf's certificate with the old key), then a good pair.
        with open(kubelet.key) as f:
            old_key = f.read()
        bad_cert, _ = ca.leaf()
        kubelet.swap(bad_cert, old_key)
        wait_until("a certificate read error",
                   lambda: b.server_value("certwatcher_read_certificate_errors_total") >= 1, 15)
        kubelet.swap(*ca.leaf())
        wait_until("the good pair to be read",
                   lambda: b.server_value("backup_guard_certificate_reloads_total",
                                          result="success") >= 2, 15)
        wait_until("the processor to report the held deletion",
                   lambda: b.server_value("backup_guard_objects_deleting", kind="SystemBackup") >= 1,
                   20, 0.5)
        yield b
    finally:
        load.stop()
        releases.stop()
        figures["dashboard_load"] = {**load.summary(), "release_backups": len(releases.created)}
        # Nothing may depend on a stopped server: webhooks first, then finalizers, then the namespace.
        drop_namespace(kube, kubeconfig, register_sh, NS)
        prom.stop()
        rc = server.stop()
        assert rc in (0, None), f"backup-guard exited with {rc} on SIGTERM:\n{server.log_tail(15)}"
        assert not load.failures, f"admission load failures: {load.failures[:5]}"
        assert not releases.errors, f"release load errors: {releases.errors[:5]}"


def resolve_variables(prom: Prometheus, dash: dict) -> dict[str, str]:
    """The dashboard's variables as Grafana sets them: query variables from their label_values
    query (which must find values), "All" where the variable allows it."""
    variables = {"__rate_interval": RATE_INTERVAL}
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", query.strip())
        assert m, f"variable {v['name']}: not a label_values query: {query}"
        selector = substitute(m.group(1), variables) if m.group(1) else None
        values = prom.api(f"label/{m.group(2)}/values",
                          **({"match[]": selector} if selector else {}))
        assert values, f"variable {v['name']}: {query} finds no values"
        variables[v["name"]] = v["allValue"] if v.get("includeAll") else values[0]
    assert variables.get("job") == JOB, variables
    return variables


def test_every_dashboard_and_alert_query_returns_data(bench, figures):
    prom = bench.prom
    wait_until("Prometheus to scrape backup-guard (up == 1)",
               lambda: [r for r in prom.query(f'up{{job="{JOB}"}}') if r["value"][1] == "1"], 30, 0.5)
    dash = dashboard()
    variables = resolve_variables(prom, dash)
    queries = [(f"panel {title!r}", substitute(expr, variables))
               for title, expr in panel_targets(dash)]
    for rule in rules():
        name = rule.get("alert") or rule.get("record")
        standin = RULE_STANDINS.get(name)
        expr = rule["expr"] if standin is None else standin[1](rule["expr"], bench)
        queries.append((f"rule {name}" + (f" ({standin[0]}; stand-in)" if standin else ""), expr))
    assert len(queries) > 20, queries
    for _, q in queries:
        assert "$" not in q, f"unresolved variable in {q}"

    # Rate windows fill within a few scrapes; wait until every query has a finite value.
    results: dict[str, list[dict]] = {}

    def all_answer():
        missing = []
        for what, q in queries:
            results[what] = prom.query(q)
            if not finite_values(results[what]):
                missing.append(what)
        return not missing or None
    try:
        wait_until("every query to return a finite value", all_answer, 45, 1)
    except AssertionError as e:
        empty = [f"{what}: {q} -> {results.get(what)}" for what, q in queries
                 if not finite_values(results.get(what, []))]
        raise AssertionError(f"{e}\nqueries without data:\n" + "\n".join(empty)) from None

    # The stand-ins found what they stand in for.
    for rule in rules():
        name = rule.get("alert") or rule.get("record")
        if name in RULE_STANDINS:
            want = RULE_STANDINS[name][2]
            got = results[next(w for w, _ in queries if w.startswith(f"rule {name} "))]
            assert any(all(r["metric"].get(k) == v for k, v in want.items()) for r in got), \
                f"{name}: the stand-in found {got}, not {want}"
    # The 5xx alert is empty because there were no 5xx answers, not because it is broken.
    assert not prom.query('backup_guard_admission_requests_total{code=~"5.."}')
    assert prom.query('backup_guard_admission_requests_total{code="403"}')
    figures["dashboard_queries"] = {"queries": len(queries),
                                    "series": sum(len(r) for r in results.values())}


def test_new_families_reach_prometheus_with_client_go_and_controller_runtime_labels(bench, kube):
    """rest_client_* and certwatcher_* as client-go and controller-runtime label them, with the
    values this bench caused."""
    prom = bench.prom
    host = kube.server.split("://", 1)[1].split("/", 1)[0]
    base = {"__name__", "job", "instance"}
    series = wait_until("rest_client_requests_total in Prometheus",
                        lambda: prom.query("rest_client_requests_total"), 20, 0.5)
    for r in series:
        assert set(r["metric"]) == base | {"code", "method", "host"}, r["metric"]
        assert r["metric"]["host"] == host, r["metric"]
        assert r["metric"]["method"] in ("GET", "POST", "PUT", "PATCH", "DELETE"), r["metric"]
    codes = {(r["metric"]["method"], r["metric"]["code"]) for r in series}
    # Lists and watches (GET 200), the Lease (PUT or POST), releases (PATCH 200).
    assert ("GET", "200") in codes and ("PATCH", "200") in codes, codes
    for r in prom.query("rest_client_request_duration_seconds_count"):
        assert set(r["metric"]) == base | {"verb", "host"}, r["metric"]
    assert float(prom.query("sum(rest_client_request_duration_seconds_count)")[0]["value"][1]) > 0

    for metric in ("certwatcher_read_certificate_total", "certwatcher_read_certificate_errors_total"):
        [r] = prom.query(metric)
        assert set(r["metric"]) == base, r["metric"]
    reads = float(prom.query("certwatcher_read_certificate_total")[0]["value"][1])
    errors = float(prom.query("certwatcher_read_certificate_errors_total")[0]["value"][1])
    assert reads >= 3 and errors >= 1, (reads, errors)  # start, the mismatched pair, the good pair
