"""Kill points: run a ``scrapy`` command that kills itself with SIGKILL at a chosen moment of its work.

    python -m tests.killpoints crawl npm -a mode=incremental      # with KILL_AT=<point>:<n> in the environment

The fault suite's kill sweeps run crawls and compactions this way instead of ``python -m scrapy``. Before
Scrapy starts, the platform's own methods are wrapped so that the ``n``-th time the process reaches
``<point>`` it sends itself SIGKILL — from whichever thread is there, as a crash or an OOM kill would. The
code under test is not changed: the wrappers call the real methods.

Points (:data:`POINTS`), in the order a batch goes through them:

``response``      a response has reached the downloader middlewares, not yet a callback
``chunk``         a chunk of a response body has arrived (mid-download)
``write``         a batch is about to be written
``put``           an object has been written, before the batch's other objects (mid-write)
``index``         a batch is written, not yet indexed
``indexed``       a batch is indexed, its cursors not yet saved
``cursor``        a cursor is being saved: the row is written, its transaction not committed
``cursor-saved``  a cursor is saved
``swap``          a compaction's new files are written, the index not yet switched to them
``delete``        objects are about to be deleted (a compaction: the index switched, the old files still there)
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

#: the environment variable naming the kill point: ``<point>:<n>``
KILL_AT = "KILL_AT"
POINTS = ("response", "chunk", "write", "put", "index", "indexed", "cursor", "cursor-saved", "swap", "delete")


class KillSwitch:
    """Counts arrivals at one point and kills the process at the ``n``-th."""

    def __init__(self, point: str, n: int) -> None:
        if point not in POINTS:
            raise SystemExit(f"{KILL_AT}: unknown point {point!r}; one of {', '.join(POINTS)}")
        self.point = point
        self.n = n
        self.count = 0
        self._lock = threading.Lock()

    def due(self, point: str) -> bool:
        """Count an arrival at ``point``; whether it is the one to die at."""
        if point != self.point:
            return False
        with self._lock:
            self.count += 1
            return self.count >= self.n

    def reached(self, point: str) -> None:
        if self.due(point):
            die()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str, before: str | None, after: str | None, switch: KillSwitch) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            switch.reached(before)
        result = original(*args, **kwargs)
        if after:
            switch.reached(after)
        return result

    setattr(owner, name, wrapper)


def install(switch: KillSwitch) -> None:
    """Wrap the platform's methods at every point (cheap: a counter per call)."""
    from scrapy import signals

    from crawler.extensions.services import Services
    from crawler.meta.db import SAVE_CURSOR_SQL, MetaDB
    from crawler.middlewares.retry import BackoffRetryMiddleware
    from crawler.pipelines.index import PartitionIndex
    from crawler.pipelines.writer import BatchWriter
    from crawler.storage.compaction import Compactor
    from crawler.storage.local import LocalStore
    from crawler.storage.s3 import S3Store

    _wrap(BackoffRetryMiddleware, "process_response", "response", None, switch)
    _wrap(BatchWriter, "write", "write", None, switch)
    for store in (LocalStore, S3Store):
        _wrap(store, "put_bytes", None, "put", switch)
        _wrap(store, "put_file", None, "put", switch)
        _wrap(store, "delete", "delete", None, switch)
    _wrap(PartitionIndex, "record", "index", "indexed", switch)
    _wrap(Compactor, "_swap", "swap", None, switch)

    original_save = MetaDB.save_cursor

    def save_cursor(self: MetaDB, source: str, value: str, key: str = "default", run_id: str | None = None) -> None:
        if switch.due("cursor"):
            # the real statement, in a transaction the kill interrupts before it commits
            def write_and_die(backend: Any) -> None:
                backend.run(SAVE_CURSOR_SQL, (source, key, value, "uncommitted", run_id))
                die()

            self._in_transaction(write_and_die)
        original_save(self, source, value, key=key, run_id=run_id)
        switch.reached("cursor-saved")

    MetaDB.save_cursor = save_cursor  # type: ignore[method-assign]

    original_from_crawler = Services.from_crawler.__func__  # type: ignore[attr-defined]

    def from_crawler(cls: type[Services], crawler: Any) -> Services:
        services = original_from_crawler(cls, crawler)
        crawler.signals.connect(lambda **_: switch.reached("chunk"), signal=signals.bytes_received, weak=False)
        return services

    Services.from_crawler = classmethod(from_crawler)  # type: ignore[method-assign,assignment]


def main() -> None:
    spec = os.environ.get(KILL_AT, "")
    if spec:
        point, _, n = spec.rpartition(":")
        install(KillSwitch(point, int(n)))
    from scrapy.cmdline import execute

    sys.argv[0] = "scrapy"
    execute()


if __name__ == "__main__":
    main()
