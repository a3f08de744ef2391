"""A store that refuses writes for a while: the batch is retried with back-off, then given up."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy.statscollectors import StatsCollector
from scrapy.utils.test import get_crawler

from crawler.pipelines import store as store_module
from crawler.pipelines.store import StorePipeline
from tests import faults


class FlakyWriter:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def write(self, batch: Any) -> list[str]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("the object store refused the connection")
        return ["written"]


def pipeline(writer: FlakyWriter, retry_seconds: float) -> StorePipeline:
    crawler = SimpleNamespace(stats=StatsCollector(get_crawler()))

    async def in_meta_thread(func: Any, *args: Any) -> Any:
        return func(*args)

    services = SimpleNamespace(
        config=SimpleNamespace(store_retry_seconds=retry_seconds), in_meta_thread=in_meta_thread, run_id="run-1"
    )
    store = StorePipeline.__new__(StorePipeline)
    store.crawler, store.services, store.writer = crawler, services, writer
    store.index = SimpleNamespace(record=lambda objects, run_id: None)
    store.lost_receipt = None  # no batch given up yet
    return store


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch):
    monkeypatch.setattr(store_module, "STORE_RETRY_FIRST_DELAY", 0.01)
    monkeypatch.setattr(store_module, "STORE_RETRY_MAX_DELAY", 0.02)
    # writes run in a thread; here a plain call is enough
    monkeypatch.setattr(
        store_module.threads,
        "deferToThread",
        lambda func, *args: asyncio.get_running_loop().run_in_executor(None, func, *args),
    )
    monkeypatch.setattr(store_module, "maybe_deferred_to_future", lambda future: future)


class Batch(list):
    record_type = SimpleNamespace(namespace="ns")


@pytest.mark.faults
def test_an_outage_shorter_than_the_retry_window_loses_nothing():
    writer = FlakyWriter(failures=3)
    store = pipeline(writer, retry_seconds=5)
    assert asyncio.run(store._store(Batch([1, 2, 3]))) == ["written"]
    assert writer.calls == 4 and store.crawler.stats.get_value("store/retries") == 3
    faults.record("(store)", "object store refusing 3 writes in a row", 3)


def test_an_outage_longer_than_the_retry_window_gives_the_batch_up():
    writer = FlakyWriter(failures=10**6)
    store = pipeline(writer, retry_seconds=0.1)
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(store._store(Batch([1, 2, 3])))
    assert writer.calls > 1  # retried before giving up
