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

import redis

logger = logging.getLogger(__name__)

# Pop up to ARGV[1] of the best requests of the priority queue and lease them to a worker, atomically.
# KEYS: queue, leases hash, lease counter. Returns {lease id, encoded request, lease id, ...}.
_POP_AND_LEASE = """
local head = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
if #head == 0 then return {} end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #head / 2 - 1)
local last = redis.call('INCRBY', KEYS[3], #head / 2)
local out = {}
for i = 1, #head, 2 do
  local lease = tostring(last - (#head - i - 1) / 2)
  redis.call('HSET', KEYS[2], lease, head[i + 1] .. ' ' .. head[i])
  out[#out + 1] = lease
  out[#out + 1] = head[i]
end
return out
"""

# Queue a request unless the dupefilter has seen its fingerprint (ARGV[1]; empty: do not filter), and add
# its unit of work to the cursor pages it belongs to in the same step (a worker that dies between the two
# would otherwise leave a page waiting for a unit never queued, or a queued unit its page does not wait for).
# KEYS: dupefilter set, queue; ARGV: fingerprint, score, encoded request, key base, page, unit, page, unit…
# Returns 1 if queued.
_ENQUEUE = """
if ARGV[1] ~= '' and redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 5, #ARGV, 2 do redis.call('SADD', ARGV[4] .. ':units:' .. ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# Give a worker's leased requests back to the queue, unless it is alive (ARGV[2] = "if-dead").
# KEYS: queue, leases hash, workers set, heartbeat, starting set; ARGV: worker, mode.
_REQUEUE = """
if ARGV[2] == 'if-dead' and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
local leases = redis.call('HVALS', KEYS[2])
for _, lease in ipairs(leases) do
  local space = string.find(lease, ' ', 1, true)
  redis.call('ZADD', KEYS[1], string.sub(lease, 1, space - 1), string.sub(lease, space + 1))
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return #leases
"""

# A heartbeat also (re)registers the worker: one that was taken for dead rejoins the run.
# KEYS: heartbeat, workers set; ARGV: worker, ttl ms.
_HEARTBEAT = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
"""

# Open a page: KEYS pages zset, page order counter, done set, page ids; ARGV page, value, key, base, units...
_OPEN_PAGE = """
local base = ARGV[4]
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('SADD', KEYS[4], ARGV[1])
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

    @property
    def page_ids(self) -> str:
        """Every page opened in the run (their ``page:`` and ``units:`` keys go with the run)."""
        return f"{self.base}:page-ids"

    def page(self, page: str) -> str:
        return f"{self.base}:page:{page}"

    def units(self, page: str) -> str:
        return f"{self.base}:units:{page}"

    def run_keys(self) -> list[str]:
        """Keys that live as long as one distributed run (cleared when a new run starts)."""
        return [
            self.dupefilter,
            self.pages,
            self.page_counter,
            self.done_pages,
            self.released,
            self.run,
            self.claims,
            self.page_ids,
            self.lease_counter,  # no lease is held when a run is cleared
        ]


#: request meta: the lease a popped request is held under (see :class:`Coordinator`)
LEASE_META = "lease"


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
        self._heartbeat = server.register_script(_HEARTBEAT)
        self._enqueue = server.register_script(_ENQUEUE)
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
                self._clear_run()
                self.server.set(self.keys.run, run_id)
            self.heartbeat()
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
        self._heartbeat(
            keys=[self.keys.heartbeat(self.worker), self.keys.workers],
            args=[self.worker, int(self.worker_timeout * 1000)],
        )

    def leave(self, *, requeue: bool) -> int:
        """Deregister; returns how many leases this worker still held. With ``requeue`` (the worker did
        not finish cleanly) they go back to the queue; otherwise they are orphans (requests replaced by a
        retry, or whose callback raised) and are dropped. The last worker out clears the run's state."""
        with self.server.lock(f"{self.keys.base}:join-lock", timeout=30, blocking_timeout=30):
            held = self.held()
            if requeue:
                self._requeue_leases(self.worker, if_dead=False)
            pipe = self.server.pipeline()
            pipe.delete(self.keys.leases(self.worker), self.keys.heartbeat(self.worker))
            pipe.srem(self.keys.workers, self.worker)
            pipe.srem(self.keys.starting, self.worker)
            pipe.execute()
            if self.server.scard(self.keys.workers) == 0 and self.server.zcard(self.keys.queue) == 0:
                self._clear_run()
        return held

    def _clear_run(self) -> None:
        pages = [raw.decode() for raw in self.server.smembers(self.keys.page_ids)]
        keys = [*self.keys.run_keys(), *(self.keys.page(p) for p in pages), *(self.keys.units(p) for p in pages)]
        for start in range(0, len(keys), 1000):
            self.server.delete(*keys[start : start + 1000])

    def _requeue_leases(self, worker: str, *, if_dead: bool) -> int:
        return int(
            self._requeue(
                keys=[
                    self.keys.queue,
                    self.keys.leases(worker),
                    self.keys.workers,
                    self.keys.heartbeat(worker),
                    self.keys.starting,
                ],
                args=[worker, "if-dead" if if_dead else "always"],
            )
        )

    def reap_dead_workers(self) -> int:
        """Put the leased requests of workers whose heartbeat expired back in the queue."""
        requeued = 0
        for raw in self.server.smembers(self.keys.workers):
            worker = raw.decode()
            if worker == self.worker:
                continue
            count = self._requeue_leases(worker, if_dead=True)  # checks the heartbeat in the same step
            if count < 0:
                continue  # alive
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

    def snapshot(self) -> dict[str, int]:
        """Live workers, queued requests and requests leased by live workers (for ``scrapy status``)."""
        live = [
            raw.decode()
            for raw in self.server.smembers(self.keys.workers)
            if self.server.exists(self.keys.heartbeat(raw.decode()))
        ]
        return {
            "workers": len(live),
            "queued": int(self.server.zcard(self.keys.queue)),
            "leased": sum(int(self.server.hlen(self.keys.leases(worker))) for worker in live),
        }

    # -- requests ------------------------------------------------------------------------------

    def pop(self) -> tuple[str, bytes] | None:
        """The next queued request (encoded) and the lease it is now held under, or None."""
        found = self.pop_many(1)
        return found[0] if found else None

    def pop_many(self, count: int) -> list[tuple[str, bytes]]:
        """Up to ``count`` of the best queued requests (encoded), each with the lease it is now held under."""
        found = self._pop(keys=[self.keys.queue, self.keys.leases(self.worker), self.keys.lease_counter], args=[count])
        return [(found[i].decode(), found[i + 1]) for i in range(0, len(found), 2)]

    def push(
        self, data: bytes, priority: int, fingerprint: str | None = None, units: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Queue an encoded request (scrapy-redis's priority order), unless ``fingerprint`` was seen; its
        (page, unit) pairs join the pages' units in the same step."""
        pairs = [part for pair in units for part in pair]
        queued = self._enqueue(
            keys=[self.keys.dupefilter, self.keys.queue],
            args=[fingerprint or "", -priority, data, self.keys.base, *pairs],
        )
        return bool(queued)

    def held(self) -> int:
        return int(self.server.hlen(self.keys.leases(self.worker)))

    def drop_leases(self, leases: Iterable[str] | None = None) -> None:
        """Drop these leases of this worker (None: all of them)."""
        if leases is None:
            self.server.delete(self.keys.leases(self.worker))
        elif leases := list(leases):
            self.server.hdel(self.keys.leases(self.worker), *leases)

    # -- pages and the cursor --------------------------------------------------------------------

    def open_page(self, page: str, value: str, key: str, units: Sequence[str]) -> bool:
        """Register a page of work; False if it was already completed in this run."""
        opened = self._open_page(
            keys=[self.keys.pages, self.keys.page_counter, self.keys.done_pages, self.keys.page_ids],
            args=[page, value, key, self.keys.base, *units],
        )
        return bool(opened)

    def units_done(self, units: Iterable[tuple[str, str]]) -> bool:
        """Mark (page, unit) pairs stored; True if a cursor value was released."""
        pipe = self.server.pipeline(transaction=False)
        for page, unit in units:
            pipe.srem(self.keys.units(page), unit)
        pipe.execute()
        return bool(self.release())

    def release(self) -> int:
        return int(
            self._release(keys=[self.keys.pages, self.keys.done_pages, self.keys.released], args=[self.keys.base])
        )

    def released_cursors(self) -> dict[str, str]:
        """The newest released value of each cursor key. Read it and save it under the metadata DB's
        lock: whichever worker saves last then saves the newest values, so the cursor never moves back."""
        return {k.decode(): v.decode() for k, v in self.server.hgetall(self.keys.released).items()}
