"""Prometheus text exposition: parsed with prometheus-client's parser, selected by labels."""
from __future__ import annotations

import re

import requests
from prometheus_client.parser import text_string_to_metric_families


def _exposed_names(text: str) -> set[str]:
    """The sample names as written in the text."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


class Metrics:
    """Samples of one exposition: `samples` is [(name, {label: value}, float)], names as exposed.
    A line that is not a sample (or a comment) raises ValueError."""

    def __init__(self, text: str):
        self.text = text
        exposed = _exposed_names(text)
        self.samples: list[tuple[str, dict, float]] = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                name = s.name
                # The parser stores a counter the OpenMetrics way: it appends "_total" to the
                # samples of a counter whose name lacks it (the API server's `..._count` counters).
                if name not in exposed and name.endswith("_total") and name[:-6] in exposed:
                    name = name[:-6]
                self.samples.append((name, dict(s.labels), float(s.value)))

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        return cls(text)

    # The metric name is positional-only: `name` is also a label of the API server's metrics.

    def select(self, metric: str, /, **labels) -> list[tuple[dict, float]]:
        """Samples of `metric` whose labels match: a value matches as its str(), a compiled
        pattern by fullmatch, a callable when it returns true for the label (None when absent)."""
        def matches(got, want) -> bool:
            if callable(want):
                return bool(want(got))
            if isinstance(want, re.Pattern):
                return got is not None and want.fullmatch(got) is not None
            return got == str(want)

        return [(lab, v) for n, lab, v in self.samples
                if n == metric and all(matches(lab.get(k), w) for k, w in labels.items())]

    def sum(self, metric: str, /, **labels) -> float:
        """Sum over the matching samples; a counter not exported yet counts as 0."""
        return sum(v for _, v in self.select(metric, **labels))

    def value(self, metric: str, /, **labels) -> float | None:
        """The first matching sample's value, or None."""
        got = self.select(metric, **labels)
        return got[0][1] if got else None

    def single(self, metric: str, /, **labels) -> float | None:
        """The value of the one matching sample; None when none or several match."""
        got = self.select(metric, **labels)
        return got[0][1] if len(got) == 1 else None

    def has(self, metric: str, /) -> bool:
        return any(n == metric for n, _, _ in self.samples)

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}

    def lines(self, prefix: str) -> str:
        """The exposition's lines that start with prefix (for failure messages)."""
        return "\n".join(line for line in self.text.splitlines() if line.startswith(prefix))


def scrape_text(url: str, timeout: float = 10.0, **kw) -> str:
    """GET url (never through a proxy); the body, after a 2xx."""
    s = requests.Session()
    s.trust_env = False
    r = s.get(url, timeout=timeout, **kw)
    r.raise_for_status()
    return r.text


def scrape(url: str, timeout: float = 10.0, **kw) -> Metrics:
    return Metrics(scrape_text(url, timeout, **kw))
