"""Checks on the API server's own admission webhook metrics between two scrapes."""
from __future__ import annotations

from opslib import WEBHOOK_NAMES, Metrics

REQUESTS = "apiserver_admission_webhook_request_total"
REJECTIONS = "apiserver_admission_webhook_rejection_count"
FAIL_OPEN = "apiserver_admission_webhook_fail_open_count"
BAD_REJECTIONS = ("calling_webhook_error", "apiserver_internal_error")


def _delta(before: Metrics, after: Metrics, metric: str, /, **want) -> float:
    return after.sum(metric, **want) - before.sum(metric, **want)


def webhook_health(before: Metrics, after: Metrics) -> dict:
    """What the API server saw of our two webhooks between the scrapes. `codes` is the admission
    response code per call (200 allowed, else the denial's code)."""
    out = {"requests": {}, "codes": {}, "bad_rejections": {}, "fail_open": {}}
    for hook in WEBHOOK_NAMES:
        out["requests"][hook] = int(_delta(before, after, REQUESTS, name=hook))
        codes = {}
        for labels, value in after.select(REQUESTS, name=hook):
            prev = sum(v for _, v in before.select(REQUESTS, **labels))
            if value - prev:
                code = labels.get("code", "?")
                codes[code] = codes.get(code, 0) + int(value - prev)
        out["codes"][hook] = dict(sorted(codes.items()))
        out["bad_rejections"][hook] = {
            e: int(_delta(before, after, REJECTIONS, name=hook, error_type=e)) for e in BAD_REJECTIONS}
        out["fail_open"][hook] = int(after.sum(FAIL_OPEN, name=hook))
    return out


def assert_healthy(health: dict, expected_denials: dict[str, dict[str, int]] | None = None):
    """Every call reached our webhooks and was answered: no calling errors, no fail-open, and the
    only non-200 answers are the denials the client asked for ({webhook: {code: count}})."""
    expected_denials = expected_denials or {}
    problems = []
    for hook in WEBHOOK_NAMES:
        if health["requests"][hook] <= 0:
            problems.append(f"the API server sent no request to {hook}")
        denials = {c: n for c, n in health["codes"][hook].items() if c != "200"}
        want = {c: n for c, n in expected_denials.get(hook, {}).items() if n}
        if denials != want:
            problems.append(f"{hook}: non-200 answers {denials}, expected {want}")
        for e, n in health["bad_rejections"][hook].items():
            if n:
                problems.append(f"{hook}: {n} rejections with error_type={e}")
        if health["fail_open"][hook]:
            problems.append(f"{hook}: fail_open_count={health['fail_open'][hook]}")
    assert not problems, "API server admission metrics: " + "; ".join(problems)
