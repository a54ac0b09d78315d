"""The alerting rules shipped with the chart are valid Prometheus rules and fire when they should."""

from chart_tools import CHART_DIR, FIXTURES, promtool_path, run

RULES = CHART_DIR / "files" / "prometheus-rules.yaml"


def test_promtool_check_rules_passes():
    out = run([promtool_path(), "check", "rules", RULES]).stdout
    assert "SUCCESS: 3 rules found" in out, out


def test_promtool_rule_unit_tests_pass():
    """fixtures/prometheus-rules-test.yaml: each alert fires on its series (with its labels and
    rendered annotations) and stays quiet on healthy ones."""
    proc = run([promtool_path(), "test", "rules", FIXTURES / "prometheus-rules-test.yaml"])
    assert "SUCCESS" in proc.stdout, proc.stdout
