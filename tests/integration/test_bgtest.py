"""The shared test library (tests/bgtest) on its own: the /metrics parser, ports and the wait."""
import socket
import time

import pytest

from bgtest.metrics import Metrics
from bgtest.ports import free_ports, port_bindable
from bgtest.wait import wait_until

EXPOSITION = r'''# HELP apiserver_admission_webhook_rejection_count Webhook rejections.
# TYPE apiserver_admission_webhook_rejection_count counter
apiserver_admission_webhook_rejection_count{name="validator.backup-guard.longhorn.io",code="422"} 3
# HELP backup_guard_finalizer_releases_total Releases.
# TYPE backup_guard_finalizer_releases_total counter
backup_guard_finalizer_releases_total{kind="Backup",reason="a \"quoted\" \\ back\nslash"} 2
backup_guard_finalizer_releases_total{kind="SystemBackup",reason="grace"} 5
# TYPE backup_guard_admission_duration_seconds histogram
backup_guard_admission_duration_seconds_bucket{le="0.1"} 4
backup_guard_admission_duration_seconds_bucket{le="+Inf"} 5
backup_guard_admission_duration_seconds_sum 0.3
backup_guard_admission_duration_seconds_count 5
untyped_gauge 7 1700000000000
'''


def test_metrics_keep_the_exposed_sample_names():
    m = Metrics(EXPOSITION)
    # a counter without _total keeps its name (the parser would store it as ..._count_total)
    assert m.sum("apiserver_admission_webhook_rejection_count", code="422") == 3
    assert not m.has("apiserver_admission_webhook_rejection_count_total")
    assert m.value("backup_guard_admission_duration_seconds_count") == 5
    assert m.value("backup_guard_admission_duration_seconds_bucket", le="+Inf") == 5
    assert m.value("untyped_gauge") == 7


def test_metrics_unescape_label_values_as_the_text_format_says():
    m = Metrics(EXPOSITION)
    [(labels, value)] = m.select("backup_guard_finalizer_releases_total", kind="Backup")
    assert labels["reason"] == 'a "quoted" \\ back\nslash'
    assert value == 2


def test_metrics_select_by_value_pattern_or_predicate():
    import re

    m = Metrics(EXPOSITION)
    assert m.sum("backup_guard_finalizer_releases_total") == 7
    assert m.sum("backup_guard_finalizer_releases_total", kind=re.compile("System.*")) == 5
    assert m.sum("backup_guard_finalizer_releases_total", reason=lambda r: r == "grace") == 5
    assert m.single("backup_guard_finalizer_releases_total") is None  # two match
    assert m.value("no_such_metric") is None


def test_metrics_refuse_a_line_that_is_not_a_sample():
    with pytest.raises(ValueError):
        Metrics("this is not { a sample\n")


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert all(20000 <= p <= 32000 for p in ports)
    assert all(port_bindable(p) for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))
        s.listen()
        assert not port_bindable(ports[0])


def test_wait_until_returns_the_first_truthy_value():
    calls = []

    def predicate():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "done"

    assert wait_until(predicate, 5, 0.01) == "done"
    assert len(calls) == 3


def test_wait_until_names_the_last_error_on_timeout():
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"waiting for the thing \(last error: .*boom"):
        wait_until(lambda: (_ for _ in ()).throw(RuntimeError("boom")), 0.3, 0.05, "the thing")
    assert time.monotonic() - t0 < 5
