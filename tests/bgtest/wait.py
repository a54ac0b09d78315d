"""The one polling loop of the tests."""
from __future__ import annotations

import time
from typing import Callable


def _raise(message: str):
    raise AssertionError(message)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.2,
               what: str | Callable[[], str] = "condition",
               fail: Callable[[str], object] = _raise):
    """Polls predicate() until it returns something truthy, and returns that. An exception from
    predicate counts as "not yet" and is named on timeout. On timeout calls fail(message)
    (AssertionError by default; the e2e suite passes pytest.fail). `what` may be a callable,
    evaluated only on timeout (for log tails and object dumps)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_error = e
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            extra = f" (last error: {last_error!r})" if last_error else ""
            fail(f"timed out after {timeout:g}s waiting for {text}{extra}")
            raise AssertionError(f"timed out waiting for {text}")  # fail() must not return
        time.sleep(interval)
