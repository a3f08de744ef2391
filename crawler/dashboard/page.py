"""The dashboard as one HTML page: totals, then a card per source with its plots (inline SVG, no
script, no asset from elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from crawler.dashboard.data import DAYS_SHOWN, RUNS_SHOWN, NamespaceState, SourceState
from crawler.dashboard.svg import Bar, bar_rows, column_chart, compact, human_bytes, human_seconds

__all__ = ["render_page"]

#: a cursor that has not moved for longer is drawn in amber (a daily schedule that missed twice)
CURSOR_STALE_SECONDS = 2 * 86400

STYLE = """
:root { --ok:#2f9e6b; --warn:#d9922b; --bad:#d64545; --info:#3d7cc9; --muted:#9aa5b1; --ink:#1f2933;
  --soft:#616e7c; --line:#e4e7eb; --card:#fff; --page:#f5f7fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--ink);
  background:var(--page); }
header { padding:16px 24px 8px; display:flex; align-items:baseline; gap:16px; flex-wrap:wrap; }
header h1 { font-size:20px; margin:0; } header .when { color:var(--soft); }
.tiles { display:flex; flex-wrap:wrap; gap:12px; padding:0 24px 12px; }
.tile { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:150px; }
.tile b { display:block; font-size:22px; } .tile span { color:var(--soft); font-size:12px; }
.tile.bad b { color:var(--bad); } .tile.ok b { color:var(--ok); }
section.source { background:var(--card); border:1px solid var(--line); border-radius:10px; margin:0 24px 18px;
  padding:12px 16px 16px; }
section.source.idle { padding:8px 16px; }
section.source h2 { font-size:17px; margin:0 8px 0 0; display:inline; }
.subtitle { color:var(--soft); } .badge { display:inline-block; border-radius:10px; padding:1px 8px; font-size:12px;
  color:#fff; margin-left:6px; vertical-align:2px; }
.badge.ok { background:var(--ok); } .badge.bad { background:var(--bad); } .badge.warn { background:var(--warn); }
.badge.muted { background:var(--muted); }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(340px,1fr)); gap:10px 20px; margin-top:10px; }
figure { margin:0; } figcaption { font-weight:600; font-size:13px; margin:4px 0; }
figcaption small { font-weight:400; color:var(--soft); }
svg.chart { width:100%; height:auto; display:block; }
svg .bar.ok { fill:var(--ok); } svg .bar.warn { fill:var(--warn); } svg .bar.bad { fill:var(--bad); }
svg .bar.info { fill:var(--info); } svg .bar.muted { fill:var(--muted); }
svg .bar:hover { opacity:.75; }
svg text { font-size:11px; fill:var(--soft); } svg text.value { fill:var(--ink); } svg text.label { fill:var(--ink); }
svg .grid { stroke:var(--line); } svg .baseline { stroke:var(--muted); }
svg .marker { stroke:var(--bad); stroke-dasharray:4 3; } svg text.marker-label { fill:var(--bad); }
svg text.note { font-size:13px; fill:var(--muted); }
.legend { font-size:12px; color:var(--soft); } .legend i { display:inline-block; width:10px; height:10px;
  border-radius:2px; margin:0 4px 0 10px; vertical-align:-1px; }
footer { color:var(--soft); font-size:12px; padding:0 24px 24px; }
"""


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "?"


def _tone(finish_reason: str | None) -> str:
    if finish_reason == "finished":
        return "ok"
    return "muted" if finish_reason is None else "bad"


def _figure(name: str, caption: str, chart: str, note: str = "") -> str:
    small = f" <small>{escape(note)}</small>" if note else ""
    return (
        f'<figure class="plot" data-plot="{escape(name)}">'
        f"<figcaption>{escape(caption)}{small}</figcaption>{chart}</figure>"
    )


def _runs(state: SourceState) -> list[str]:
    name = state.source.name
    runs = state.runs
    labels = [run["started_at"].strftime("%m-%d %H:%M") if run["started_at"] else "?" for run in runs]
    if len(set(labels)) < len(labels):  # runs within a minute of each other: their seconds tell them apart
        labels = [run["started_at"].strftime("%H:%M:%S") if run["started_at"] else "?" for run in runs]

    def tooltip(run: dict) -> str:
        duration = human_seconds(run["duration"]) if run["duration"] is not None else "still running"
        rate = f"{run['error_rate']:.1%}" if run["error_rate"] is not None else "-"
        return (
            f"{_when(run['started_at'])} · {run['finish_reason'] or 'running'} · {run['items']:,} items · "
            f"error rate {rate} · {duration}"
        )

    items = [
        Bar(label, run["items"], _tone(run["finish_reason"]), tooltip(run), key=run["run_id"])
        for label, run in zip(labels, runs, strict=True)
    ]
    errors = [
        Bar(label, round((run["error_rate"] or 0) * 100, 2), "bad" if run["error_rate"] else "ok", tooltip(run))
        for label, run in zip(labels, runs, strict=True)
    ]
    durations = [
        Bar(
            label,
            round(run["duration"] or 0, 3),
            _tone(run["finish_reason"]),
            tooltip(run),
            human_seconds(run["duration"] or 0),
        )
        for label, run in zip(labels, runs, strict=True)
    ]
    note = f"last {min(len(runs), RUNS_SHOWN)}, green: finished, red: another finish reason"
    return [
        _figure("run-items", "Items per run", column_chart(items, name=f"{name}/run-items", empty="no run yet"), note),
        _figure(
            "run-error-rate",
            "Error rate per run (%)",
            column_chart(errors, name=f"{name}/run-error-rate", fmt=lambda v: f"{v:g}%", empty="no run yet"),
            "dead letters ÷ inputs",
        ),
        _figure(
            "run-duration",
            "Duration per run",
            column_chart(durations, name=f"{name}/run-duration", fmt=human_seconds, empty="no run yet"),
        ),
    ]


def _per_day(namespace: NamespaceState) -> str:
    bars = [
        Bar(day.strftime("%m-%d"), count, "info", f"{day.isoformat()}: {count:,} records", key=day.isoformat())
        for day, count in namespace.per_day
    ]
    note = f"{namespace.records:,} in all" + (
        f", last on {namespace.last_day.isoformat()}" if namespace.last_day else ""
    )
    chart = column_chart(bars, name=f"{namespace.namespace}/per-day", empty="nothing stored yet")
    return _figure(f"per-day:{namespace.namespace}", f"Records stored per day · {namespace.namespace}", chart, note)


def _freshness(state: SourceState, now: datetime) -> str:
    ttl = state.ttl
    bars = []
    notes = []
    for namespace in state.namespaces:
        if namespace.first_ingested_at is None:
            continue
        oldest = (now - namespace.first_ingested_at).total_seconds()
        newest = (now - namespace.last_ingested_at).total_seconds() if namespace.last_ingested_at else oldest
        tone = "bad" if ttl and oldest > ttl else "ok"
        tooltip = (
            f"{namespace.namespace}: oldest record {human_seconds(oldest)} old, newest {human_seconds(newest)} old"
        )
        bars.append(Bar(f"{namespace.namespace} oldest", round(oldest), tone, tooltip, human_seconds(oldest)))
        bars.append(Bar(f"{namespace.namespace} newest", round(newest), "info", tooltip, human_seconds(newest)))
        if namespace.within_ttl is not None and namespace.records:
            notes.append(f"{namespace.within_ttl:,} of {namespace.records:,} within the TTL")
    marker = (ttl, f"TTL {human_seconds(ttl)}") if ttl else None
    caption = "Freshness: age of the oldest and newest record"
    note = "; ".join(notes) if notes else ("no TTL" if not ttl else "")
    chart = bar_rows(
        bars, name=f"{state.source.name}/freshness", fmt=human_seconds, marker=marker, empty="nothing stored yet"
    )
    return _figure("freshness", caption, chart, note)


def _cursors(state: SourceState) -> str:
    bars = [
        Bar(
            cursor["key"],
            round(cursor["age"] or 0),
            "warn" if (cursor["age"] or 0) > CURSOR_STALE_SECONDS else "info",
            f"{cursor['key']} = {str(cursor['value'])[:80]} · saved {human_seconds(cursor['age'] or 0)} ago",
            human_seconds(cursor["age"] or 0),
        )
        for cursor in state.cursors[:12]
    ]
    backlog = state.status.get("backlog")
    note = f"backlog at the last run: {backlog:,}" if isinstance(backlog, int) else "time since each cursor moved"
    chart = bar_rows(bars, name=f"{state.source.name}/cursor-lag", fmt=human_seconds, empty="no cursor")
    return _figure("cursor-lag", "Cursor lag", chart, note)


def _dead_letters(state: SourceState) -> str:
    bars = [Bar(reason, count, "bad") for reason, count in state.dead_letters[:12]]
    chart = bar_rows(bars, name=f"{state.source.name}/dead-letters", empty="none waiting")
    return _figure("dead-letters", "Dead letters waiting, by reason", chart, "scrapy replay-failed retries them")


def _bytes(state: SourceState) -> str:
    bars = [Bar(ns.namespace, ns.bytes, "info", text=human_bytes(ns.bytes)) for ns in state.namespaces]
    chart = bar_rows(bars, name=f"{state.source.name}/bytes", fmt=human_bytes)
    return _figure("bytes", "Bytes stored", chart, human_bytes(sum(ns.bytes for ns in state.namespaces)) + " in all")


def _distributed(state: SourceState) -> str:
    snapshot = state.status.get("distributed")
    if snapshot is None:
        return ""
    if "error" in snapshot:
        return _figure("distributed", "Distributed crawl", "<p class='subtitle'>Redis is unreachable</p>")
    bars = [
        Bar("live workers", snapshot["workers"], "ok" if snapshot["workers"] else "muted"),
        Bar("queued", snapshot["queued"], "info"),
        Bar("leased", snapshot["leased"], "warn" if snapshot["leased"] else "muted"),
    ]
    return _figure("distributed", "Distributed crawl", bar_rows(bars, name=f"{state.source.name}/distributed"))


def _source(state: SourceState, now: datetime) -> str:
    source = state.source
    last = state.runs[-1] if state.runs else None
    if last is None:
        badge = '<span class="badge muted">never run</span>'
    else:
        reason = last["finish_reason"] or "running"
        tone = _tone(last["finish_reason"]) if last["finish_reason"] else "warn"
        badge = f'<span class="badge {tone}">{escape(reason)}</span>'
    when = f" · last run {last['started_at']:%Y-%m-%d %H:%M} UTC" if last and last["started_at"] else ""
    schedule = f" · schedule {source.schedule.cron} UTC" if source.schedule else ""
    if state.idle:  # one line rather than a grid of empty plots
        names = ", ".join(ns.namespace for ns in state.namespaces)
        return (
            f'<section class="source idle" id="source-{escape(source.name)}" data-source="{escape(source.name)}">'
            f"<h2>{escape(source.name)}</h2>{badge}"
            f'<div class="subtitle">{escape(source.title)}{escape(schedule)} · nothing stored in {escape(names)}</div>'
            f'<div class="grid">{_distributed(state)}</div></section>'
        )
    plots = [
        *_runs(state),
        *(_per_day(namespace) for namespace in state.namespaces),
        _bytes(state),
        _freshness(state, now),
        _cursors(state),
        _dead_letters(state),
        _distributed(state),
    ]
    return (
        f'<section class="source" id="source-{escape(source.name)}" data-source="{escape(source.name)}">'
        f"<h2>{escape(source.name)}</h2>{badge}"
        f'<div class="subtitle">{escape(source.title)}{escape(when)}{escape(schedule)}</div>'
        f'<div class="grid">{"".join(plot for plot in plots if plot)}</div></section>'
    )


def _tiles(states: Sequence[SourceState]) -> str:
    records = sum(ns.records for state in states for ns in state.namespaces)
    stored = sum(ns.bytes for state in states for ns in state.namespaces)
    dead = sum(int(state.status.get("dead_letters") or 0) for state in states)
    failing = [s.source.name for s in states if s.runs and s.runs[-1]["finish_reason"] not in ("finished", None)]
    tiles = [
        ("sources", str(len(states)), ""),
        ("records stored", compact(records), ""),
        ("bytes stored", human_bytes(stored), ""),
        ("dead letters waiting", compact(dead), "bad" if dead else "ok"),
        ("last runs not finished", str(len(failing)), "bad" if failing else "ok"),
    ]
    return (
        '<div class="tiles">'
        + "".join(
            f'<div class="tile {tone}" data-tile="{escape(name)}">'
            f"<b>{escape(value)}</b><span>{escape(name)}</span></div>"
            for name, value, tone in tiles
        )
        + "</div>"
    )


def render_page(states: Sequence[SourceState], *, now: datetime | None = None, storage: str = "") -> str:
    now = now or datetime.now(UTC)
    # the sources with something to show first, the idle ones (one line each) after them
    ordered = sorted(states, key=lambda state: (state.idle, state.source.name))
    sources = "".join(_source(state, now) for state in ordered)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Ingestion status</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Ingestion status</h1><span class='when'>{now:%Y-%m-%d %H:%M:%S} UTC</span>"
        f"<span class='when'>{escape(storage)}</span><a href='/'>refresh</a> <a href='/docs'>SQL API</a></header>"
        f"{_tiles(states)}{sources}"
        f"<footer>From the metadata DB and the catalogs; records per day are the last {DAYS_SHOWN} days. "
        "Hover over a bar for its figures.</footer></body></html>"
    )
