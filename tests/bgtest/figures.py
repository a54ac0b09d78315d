"""Measured figures of a suite: printed in pytest's summary and kept as figures.json."""
from __future__ import annotations

import json
import os


def report(terminalreporter, title: str, figures: dict, state_dir: str | None):
    """One line a test ({test: {figure: value}}) in a section `title`, and <state_dir>/figures.json."""
    if not figures:
        return
    terminalreporter.section(title)
    for test, data in figures.items():
        terminalreporter.write_line(f"{test}: {json.dumps(data, sort_keys=True)}")
    if state_dir:
        with open(os.path.join(state_dir, "figures.json"), "w") as f:
            json.dump(figures, f, indent=2, sort_keys=True)
