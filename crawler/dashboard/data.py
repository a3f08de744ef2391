"""What the dashboard shows, gathered from the metadata DB (runs, cursors, dead letters, the partition
index), the namespaces' catalogs and, for a distributed crawl, Redis. Never a Parquet file: the cost
grows with the number of stored objects and runs, not with the number of records."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from crawler.meta import MetaDB
from crawler.pipelines.index import iso_utc
from crawler.sources import Source, all_sources
from crawler.status import distributed_snapshot, error_rate, source_status
from crawler.storage import ObjectStore
from crawler.storage.layout import catalog_key, partition_day

__all__ = ["DAYS_SHOWN", "RUNS_SHOWN", "NamespaceState", "SourceState", "gather", "open_meta"]

logger = logging.getLogger(__name__)

#: the last runs plotted per source
RUNS_SHOWN = 20
#: the days of stored records plotted per namespace
DAYS_SHOWN = 30


@dataclass
class NamespaceState:
    namespace: str
    table: str
    #: records stored (every version), from the catalog
    records: int = 0
    bytes: int = 0
    #: records stored per UTC day over the last :data:`DAYS_SHOWN` days (days without any: 0)
    per_day: list[tuple[date, int]] = field(default_factory=list)
    last_day: date | None = None
    first_ingested_at: datetime | None = None
    last_ingested_at: datetime | None = None
    #: records in objects written entirely within the source's freshness TTL (None: no TTL)
    within_ttl: int | None = None


@dataclass
class SourceState:
    source: Source
    #: ``scrapy status``'s row (:func:`crawler.status.source_status`)
    status: dict[str, Any]
    #: the last runs, oldest first, each with ``duration`` (seconds) and ``error_rate``
    runs: list[dict[str, Any]]
    namespaces: list[NamespaceState]
    #: waiting dead letters per reason (the part before the first ``:``), most first
    dead_letters: list[tuple[str, int]]
    #: cursors (not ETags) with their age in seconds, most lagging first
    cursors: list[dict[str, Any]]

    @property
    def idle(self) -> bool:
        """Never run, nothing stored, nothing waiting."""
        return not (self.runs or self.cursors or self.dead_letters or any(ns.records for ns in self.namespaces))

    @property
    def ttl(self) -> float:
        return self.source.policy.freshness_ttl


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def open_meta(url: str) -> MetaDB | None:
    """The metadata DB, or ``None`` for a local SQLite file that does not exist yet (looking creates nothing)."""
    local = url.startswith("sqlite:///") and ":memory:" not in url
    if local and not Path(url.removeprefix("sqlite:///").split("?", 1)[0]).expanduser().exists():
        return None
    return MetaDB.connect(url, busy_timeout=5.0)


def read_catalog(store: ObjectStore, namespace: str) -> dict[str, Any]:
    try:
        data = orjson.loads(store.get_bytes(catalog_key(namespace)))
    except KeyError:
        return {}
    except orjson.JSONDecodeError:
        logger.warning("the catalog of %s is not valid JSON", namespace)
        return {}
    return data if isinstance(data, dict) else {}


def _namespace_state(
    meta: MetaDB | None, store: ObjectStore, record_type: Any, ttl: float, now: datetime
) -> NamespaceState:
    namespace = record_type.namespace
    catalog = read_catalog(store, namespace)
    state = NamespaceState(namespace, record_type.table, records=int(catalog.get("record_count") or 0))
    daily: dict[date, int] = {}
    for name, partition in (catalog.get("partitions") or {}).items():
        day = partition_day(name)
        state.bytes += int(partition.get("bytes") or 0)
        if day is not None:
            daily[day] = daily.get(day, 0) + int(partition.get("rows") or 0)
    if daily:
        state.last_day = max(daily)
        end = max(now.date(), state.last_day)
        start = max(min(daily), end - timedelta(days=DAYS_SHOWN - 1))
        state.per_day = [
            (start + timedelta(n), daily.get(start + timedelta(n), 0)) for n in range((end - start).days + 1)
        ]
    state.first_ingested_at = parse_time(catalog.get("first_ingested_at"))
    state.last_ingested_at = parse_time(catalog.get("last_ingested_at"))
    if ttl > 0 and meta is not None:
        cutoff = iso_utc(now - timedelta(seconds=ttl))
        state.within_ttl = meta.partition_totals(namespace, ingested_since=cutoff)["records"]
    return state


def _runs(meta: MetaDB, source: str) -> list[dict[str, Any]]:
    runs = []
    for run in reversed(meta.last_runs(source, limit=RUNS_SHOWN)):
        started, finished = parse_time(run.get("started_at")), parse_time(run.get("finished_at"))
        runs.append(
            {
                "run_id": run["run_id"],
                "started_at": started,
                "finish_reason": run.get("finish_reason"),
                "items": run.get("items") or 0,
                "dead_letters": run.get("dead_letters") or 0,
                "error_rate": error_rate(run),
                "duration": (finished - started).total_seconds() if started and finished else None,
            }
        )
    return runs


def _dead_letters(meta: MetaDB, source: str) -> list[tuple[str, int]]:
    # Reasons may carry details after a colon ("domain_not_found: no company on x.io"): grouped by their kind.
    kinds: dict[str, int] = {}
    for reason, count in meta.count_failed_by_reason(source).items():
        kind = reason.split(":", 1)[0].strip() or reason
        kinds[kind] = kinds.get(kind, 0) + count
    return sorted(kinds.items(), key=lambda item: (-item[1], item[0]))


def _cursors(meta: MetaDB, source: str, now: datetime) -> list[dict[str, Any]]:
    cursors = []
    for row in meta.cursors(source):
        if row["cursor_key"].startswith("etag:"):
            continue
        updated = parse_time(row.get("updated_at"))
        age = (now - updated).total_seconds() if updated else None
        cursors.append({"key": row["cursor_key"], "value": row["cursor_value"], "updated_at": updated, "age": age})
    return sorted(cursors, key=lambda c: (-(c["age"] or 0), c["key"]))


class _Distributed:
    """The distributed crawls' state per source; after Redis fails once, the other sources do not wait
    for it again (the page answers at once with Redis down)."""

    def __init__(self, server: Any, key_prefix: str) -> None:
        self.server, self.key_prefix, self.failure = server, key_prefix, ""

    def snapshot(self, source: str) -> dict[str, Any] | None:
        if self.failure:
            return {"error": self.failure}
        try:
            return distributed_snapshot(self.server, self.key_prefix, source)
        except Exception as exc:  # Redis down or refusing: the rest of the page still answers
            logger.warning("the distributed crawl's state is unavailable: %s", exc)
            self.failure = type(exc).__name__
            return {"error": self.failure}


def gather(
    meta: MetaDB | None,
    store: ObjectStore,
    *,
    server: Any = None,
    key_prefix: str = "crawler",
    now: datetime | None = None,
) -> list[SourceState]:
    """Every declared source's state, by name; ``meta`` ``None``: nothing has run yet."""
    now = now or datetime.now(UTC)
    distributed = _Distributed(server, key_prefix)
    states = []
    for _, source in sorted(all_sources().items()):
        ttl = source.policy.freshness_ttl
        namespaces = [_namespace_state(meta, store, record_type, ttl, now) for record_type in source.records]
        if meta is None:
            status: dict[str, Any] = {"source": source.name, "dead_letters": 0, "backlog": None, "distributed": None}
            states.append(SourceState(source, status, [], namespaces, [], []))
            continue
        states.append(
            SourceState(
                source,
                {**source_status(meta, source), "distributed": distributed.snapshot(source.name)},
                _runs(meta, source.name),
                namespaces,
                _dead_letters(meta, source.name),
                _cursors(meta, source.name, now),
            )
        )
    return states
