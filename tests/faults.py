"""The fault suite's figures: the tests that inject faults report what they injected and what they found.

A fault test (marked ``faults``) asserts that nothing was lost and no cursor ran ahead; once its
assertions pass it records its figures here with :func:`record`. At the end of the session the figures
are printed as a table per source and fault (and written as JSON to ``$FAULTS_REPORT`` when set).

``make test`` runs the suite at its CI scale; ``make faults`` runs it alone at ``FAULTS_SCALE=full``
(more kill points, larger sweeps), which is what the README's figures table comes from.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

COLUMNS = ("injected", "records_lost", "cursor_ahead", "crashes", "peak_rss_mb")
_FIGURES: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))


def full_scale() -> bool:
    """Whether the suite runs at full scale (``FAULTS_SCALE=full``), not CI's bounded one."""
    return os.environ.get("FAULTS_SCALE", "ci") == "full"


def record(
    source: str,
    fault: str,
    injected: int,
    *,
    lost: int = 0,
    cursor_ahead: int = 0,
    crashes: int = 0,
    peak_rss_mb: float = 0,
) -> None:
    """Add one test's figures (call it after the test's own assertions); the peak RSS of a crawl, where
    measured, is the highest of the row's."""
    row = _FIGURES[(source, fault)]
    for column, value in zip(COLUMNS[:4], (injected, lost, cursor_ahead, crashes), strict=True):
        row[column] += value
    row["peak_rss_mb"] = max(row["peak_rss_mb"], round(peak_rss_mb))


def figures() -> list[dict[str, Any]]:
    return [{"source": source, "fault": fault, **row} for (source, fault), row in sorted(_FIGURES.items())]


def summary() -> str | None:
    """The figures as a Markdown table (the README's), or None when no fault test ran."""
    rows = figures()
    if not rows:
        return None
    lines = [
        "| source | fault | injected | records lost | cursor ahead | crashes | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [str(row[column]) for column in ("source", "fault", *COLUMNS[:4])] + [str(row["peak_rss_mb"] or "—")]
        lines.append("| " + " | ".join(cells) + " |")
    report = os.environ.get("FAULTS_REPORT")
    if report:
        with open(report, "w") as out:
            json.dump(rows, out, indent=2)
    return "\n".join(lines)
