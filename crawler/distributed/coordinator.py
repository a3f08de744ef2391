"""Shared state of one distributed crawl, kept in Redis: workers, leases, pages and the cursor.

N workers of a spider (on any hosts) share one scrapy-redis request queue. This module adds what the
platform's invariants need on top of it (DESIGN §3.1):

* **Leases.** A worker pops a request *and* records it under its own lease in one atomic step; the
  lease is dropped only once the work of that request is stored. A worker that stops heart-beating
  is dead: any other worker puts its leased requests back in the queue, so killing one loses nothing.
* **Pages.** A feed page's cursor value may be saved once every unit of work (package) of that page
  *and of every earlier page* is stored — by whichever worker fetched it. Pages are ordered by the
  time they were opened; units are a set per page, so a page re-opened after a crash and duplicate
  acknowledgements are harmless.
* **The cursor.** Released cursor values are kept in Redis; a worker saves the newest one to the
  metadata DB under a lock, so concurrent saves never move the cursor backwards.

Keys are ``{prefix}:{spider}:…``; the scripts build key names, so Redis Cluster is not supported.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

logger = logging.getLogger(__name__)

# Pop the best request of the priority queue and lease it to a worker, atomically.
# KEYS: queue, leases hash, lease counter. Returns {lease id, encoded request} or nil.
_POP_AND_LEASE = """
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then return nil end
redis.call('ZREM', KEYS[1], head[1])
local lease = tostring(redis.call('INCR', KEYS[3]))
redis.call('HSET', KEYS[2], lease, head[2] .. ' ' .. head[1])
return {lease, head[1]}
"""

# Give a dead worker's leased requests back to the queue. KEYS: queue, leases hash, workers set.
_REQUEUE = """
local leases = redis.call('HVALS', KEYS[2])
for _, lease in ipairs(leases) do
  local space = string.find(lease, ' ', 1, true)
  redis.call('ZADD', KEYS[1], string.sub(lease, 1, space - 1), string.sub(lease, space + 1))
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return #leases
"""

# Open a page: KEYS pages zset, page order counter, done set; ARGV page, value, key, units...
_OPEN_PAGE = """
local base = ARGV[4]
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
end
redis.call('HSET', base .. ':page:' .. ARGV[1], 'value', ARGV[2], 'key', ARGV[3])
for i = 5, #ARGV do redis.call('SADD', base .. ':units:' .. ARGV[1], ARGV[i]) end
return 1
"""

# Release every finished page at the head of the order; remember the newest value per cursor key.
# KEYS: pages zset, done set, released-cursors hash; ARGV: key base. Returns how many were released.
_RELEASE = """
local base = ARGV[1]
local released = 0
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #head == 0 then break end
  local page = head[1]
  if redis.call('SCARD', base .. ':units:' .. page) > 0 then break end
  local info = redis.call('HMGET', base .. ':page:' .. page, 'value', 'key')
  redis.call('HSET', KEYS[3], info[2], info[1])
  redis.call('ZREM', KEYS[1], page)
  redis.call('DEL', base .. ':page:' .. page)
  redis.call('SADD', KEYS[2], page)
  released = released + 1
end
return released
"""


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one spider's distributed crawl."""

    base: str

    @classmethod
    def for_spider(cls, prefix: str, spider: str) -> Keys:
        return cls(f"{prefix}:{spider}")

    @property
    def queue(self) -> str:
        return f"{self.base}:requests"

    @property
    def dupefilter(self) -> str:
        return f"{self.base}:dupefilter"

    @property
    def workers(self) -> str:
        return f"{self.base}:workers"

    def heartbeat(self, worker: str) -> str:
        return f"{self.base}:worker:{worker}"

    def leases(self, worker: str) -> str:
        return f"{self.base}:leases:{worker}"

    @property
    def starting(self) -> str:
        """Workers whose ``start()`` may still add work."""
        return f"{self.base}:starting"

    @property
    def lease_counter(self) -> str:
        return f"{self.base}:lease-seq"

    @property
    def pages(self) -> str:
        return f"{self.base}:pages"

    @property
    def page_counter(self) -> str:
        return f"{self.base}:page-seq"

    @property
    def done_pages(self) -> str:
        return f"{self.base}:done-pages"

    @property
    def released(self) -> str:
        return f"{self.base}:released-cursors"

    @property
    def run(self) -> str:
        return f"{self.base}:run"

    @property
    def claims(self) -> str:
        return f"{self.base}:claims"

    def run_keys(self) -> list[str]:
        """Keys that live as long as one distributed run (cleared when a new run starts)."""
        return [self.dupefilter, self.pages, self.page_counter, self.done_pages, self.released, self.run, self.claims]


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Coordinator:
    """One worker's view of the shared crawl state. Thread-safe (redis-py pools its connections)."""

    def __init__(
        self, server: redis.Redis, keys: Keys, *, worker: str | None = None, worker_timeout: float = 30.0
    ) -> None:
        self.server = server
        self.keys = keys
        self.worker = worker or new_worker_id()
        self.worker_timeout = worker_timeout
        self._pop = server.register_script(_POP_AND_LEASE)
        self._requeue = server.register_script(_REQUEUE)
        self._open_page = server.register_script(_OPEN_PAGE)
        self._release = server.register_script(_RELEASE)

    # -- workers -------------------------------------------------------------------------------

    def join(self, run_id: str) -> tuple[bool, str]:
        """Register this worker. Returns (founder, run id): the first worker of a run (no live worker,
        nothing queued or leased) clears the state a previous run left and names the run."""
        with self.server.lock(f"{self.keys.base}:join-lock", timeout=30, blocking_timeout=30):
            self.reap_dead_workers()
            live = self.server.scard(self.keys.workers)
            founder = live == 0 and self.server.zcard(self.keys.queue) == 0
            if founder:
                self.server.delete(*self.keys.run_keys())
                self.server.set(self.keys.run, run_id)
            self.heartbeat()
            self.server.sadd(self.keys.workers, self.worker)
            self.server.sadd(self.keys.starting, self.worker)
            shared_run = self.server.get(self.keys.run)
        return founder, shared_run.decode() if shared_run else run_id

    def started(self) -> None:
        """This worker's ``start()`` is exhausted: all it adds from now on comes from leased work."""
        self.server.srem(self.keys.starting, self.worker)

    def claim(self, task: str) -> bool:
        """True for the first worker of the run to claim ``task`` (e.g. reading a feed from its cursor)."""
        return bool(self.server.hsetnx(self.keys.claims, task, self.worker))

    def heartbeat(self) -> None:
        self.server.set(self.keys.heartbeat(self.worker), "1", px=int(self.worker_timeout * 1000))

    def leave(self) -> int:
        """Deregister; returns how many leases this worker still held (dropped: their work is done or
        was handed back to the queue by a retry). The last worker out clears the run's state."""
        with self.server.lock(f"{self.keys.base}:join-lock", timeout=30, blocking_timeout=30):
            left = self.server.hlen(self.keys.leases(self.worker))
            pipe = self.server.pipeline()
            pipe.delete(self.keys.leases(self.worker), self.keys.heartbeat(self.worker))
            pipe.srem(self.keys.workers, self.worker)
            pipe.srem(self.keys.starting, self.worker)
            pipe.execute()
            if self.server.scard(self.keys.workers) == 0 and self.server.zcard(self.keys.queue) == 0:
                self.server.delete(*self.keys.run_keys())
        return left

    def reap_dead_workers(self) -> int:
        """Put the leased requests of workers whose heartbeat expired back in the queue."""
        requeued = 0
        for raw in self.server.smembers(self.keys.workers):
            worker = raw.decode()
            if worker == self.worker or self.server.exists(self.keys.heartbeat(worker)):
                continue
            count = int(
                self._requeue(keys=[self.keys.queue, self.keys.leases(worker), self.keys.workers], args=[worker])
            )
            self.server.srem(self.keys.starting, worker)
            if count:
                logger.warning("worker %s stopped heart-beating: %d leased requests re-queued", worker, count)
            requeued += count
        return requeued

    def work_elsewhere(self) -> bool:
        """True while requests are queued, or another live worker holds leases or is still starting."""
        if self.server.zcard(self.keys.queue):
            return True
        starting = self.server.smembers(self.keys.starting)
        for raw in self.server.smembers(self.keys.workers):
            worker = raw.decode()
            if worker != self.worker and (raw in starting or self.server.hlen(self.keys.leases(worker))):
                return True
        return False

    # -- requests ------------------------------------------------------------------------------

    def pop(self) -> tuple[str, bytes] | None:
        """The next queued request (encoded) and the lease it is now held under, or None."""
        found = self._pop(keys=[self.keys.queue, self.keys.leases(self.worker), self.keys.lease_counter])
        if not found:
            return None
        lease, data = found
        return lease.decode(), data

    def held(self) -> int:
        return int(self.server.hlen(self.keys.leases(self.worker)))

    def drop_leases(self, leases: Iterable[str]) -> None:
        leases = list(leases)
        if leases:
            self.server.hdel(self.keys.leases(self.worker), *leases)

    # -- pages and the cursor --------------------------------------------------------------------

    def open_page(self, page: str, value: str, key: str, units: Sequence[str]) -> bool:
        """Register a page of work; False if it was already completed in this run."""
        opened = self._open_page(
            keys=[self.keys.pages, self.keys.page_counter, self.keys.done_pages],
            args=[page, value, key, self.keys.base, *units],
        )
        return bool(opened)

    def units_done(self, units: Iterable[tuple[str, str]]) -> bool:
        """Mark (page, unit) pairs stored; True if a cursor value was released."""
        pipe = self.server.pipeline(transaction=False)
        for page, unit in units:
            pipe.srem(f"{self.keys.base}:units:{page}", unit)
        pipe.execute()
        return bool(self.release())

    def release(self) -> int:
        return int(
            self._release(keys=[self.keys.pages, self.keys.done_pages, self.keys.released], args=[self.keys.base])
        )

    def released_cursors(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.server.hgetall(self.keys.released).items()}

    def save_released_cursors(self, save: Any) -> dict[str, str]:
        """Call ``save(key, value)`` for the newest released value of each cursor key, under a lock:
        whichever worker saves last saves the newest values, so the cursor never moves back."""
        with self.server.lock(f"{self.keys.base}:cursor-lock", timeout=60, blocking_timeout=60):
            cursors = self.released_cursors()
            for key, value in cursors.items():
                save(key, value)
        return cursors
