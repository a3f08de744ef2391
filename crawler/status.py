"""The platform's state per source, read from the metadata DB (and Redis for a distributed crawl):
what ``scrapy status`` prints and the dashboard (:mod:`crawler.dashboard`) plots."""

from __future__ import annotations

from typing import Any

from crawler.distributed.coordinator import Coordinator, Keys
from crawler.meta import MetaDB
from crawler.sources import Source

__all__ = ["distributed_snapshot", "error_rate", "redis_server", "source_status"]


def error_rate(run: dict[str, Any]) -> float | None:
    """The share of a run's inputs that became dead letters (a failed request is also logged as an
    error; it counts once); ``None`` without a run."""
    if not run:
        return None
    items, dead = run.get("items") or 0, run.get("dead_letters") or 0
    return round(dead / max(items + dead, 1), 4)


def redis_server(settings: Any) -> Any:
    """The distributed crawl's Redis (``REDIS_URL``), or ``None`` when the crawl is not distributed."""
    if not settings.get("REDIS_URL"):
        return None
    from scrapy_redis import connection

    return connection.from_settings(settings)


def distributed_snapshot(server: Any, key_prefix: str, source: str) -> dict[str, int] | None:
    """Live workers, queued and leased requests of ``source``'s distributed crawl (``None``: no Redis)."""
    if server is None:
        return None
    return Coordinator(server, Keys.for_spider(key_prefix, source), worker="status").snapshot()


def source_status(meta: MetaDB, declaration: Source, server: Any = None, key_prefix: str = "crawler") -> dict[str, Any]:
    """One source's schedule, last run, cursors, backlog, waiting dead letters, stored bytes and
    distributed crawl (``scrapy status``'s columns)."""
    source = declaration.name
    runs = meta.last_runs(source, limit=1)
    run = runs[0] if runs else {}
    stats = run.get("stats") or {}
    cursors = {
        row["cursor_key"]: row["cursor_value"]
        for row in meta.cursors(source)
        if not row["cursor_key"].startswith("etag:")
    }
    stored = sum(meta.partition_totals(record.namespace)["bytes"] for record in declaration.records)
    schedule = declaration.schedule
    return {
        "source": source,
        "schedule": (
            f"{schedule.cron} " + " ".join(f"{k}={v}" for k, v in schedule.arguments.items()) if schedule else None
        ),
        "last_run": run.get("started_at"),
        "finish_reason": run.get("finish_reason"),
        "items": run.get("items") or 0,
        "error_rate": error_rate(run),
        "errors": run.get("errors"),
        "cursors": cursors,
        "backlog": stats.get(f"{source}/backlog") if isinstance(stats, dict) else None,
        "dead_letters": meta.count_failed(source, include_replayed=False),
        "bytes_stored": stored,
        "distributed": distributed_snapshot(server, key_prefix, source),
    }
