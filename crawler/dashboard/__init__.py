"""The status dashboard ``scrapy serve`` answers at ``/``: per source its last runs, records stored per
day, bytes stored, freshness, cursor lag, dead letters by reason and a distributed crawl's workers and
queue, as server-side SVG plots (:mod:`crawler.dashboard.svg`). It reads the metadata DB and the catalogs
only (:mod:`crawler.dashboard.data`), never a Parquet file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crawler.dashboard.data import gather, open_meta
from crawler.dashboard.page import render_page
from crawler.storage import ObjectStore

__all__ = ["dashboard_html"]


def dashboard_html(
    store: ObjectStore,
    meta_db_url: str,
    *,
    server: Any = None,
    key_prefix: str = "crawler",
    now: datetime | None = None,
) -> str:
    """The dashboard page for the data in ``store`` and the metadata DB at ``meta_db_url``, as of ``now``."""
    now = now or datetime.now(UTC)
    meta = open_meta(meta_db_url)
    try:
        states = gather(meta, store, server=server, key_prefix=key_prefix, now=now)
    finally:
        if meta is not None:
            meta.close()
    return render_page(states, now=now, storage=store.uri)
