"""The shared state of a distributed crawl, on the machine's real Redis."""

from __future__ import annotations

import pickle

import redis

from crawler.distributed.coordinator import Coordinator, Keys
from tests.conftest import REDIS_TEST_URL


def coordinator(prefix: str, worker: str, timeout: float = 30.0) -> Coordinator:
    return Coordinator(
        redis.Redis.from_url(REDIS_TEST_URL), Keys.for_spider(prefix, "npm"), worker=worker, worker_timeout=timeout
    )


def push(c: Coordinator, data: bytes, priority: int = 0) -> None:
    c.server.zadd(c.keys.queue, {data: -priority})  # as scrapy-redis's PriorityQueue does


def test_pop_leases_in_priority_order(redis_prefix):
    a = coordinator(redis_prefix, "a")
    push(a, b"page", priority=-1)
    push(a, b"pkg")
    lease, data = a.pop()
    assert data == b"pkg" and a.held() == 1
    assert a.pop()[1] == b"page"
    assert a.pop() is None
    a.drop_leases([lease])
    assert a.held() == 1


def test_dead_workers_leases_go_back_to_the_queue(redis_prefix):
    dead, alive = coordinator(redis_prefix, "dead", timeout=0.2), coordinator(redis_prefix, "alive")
    dead.join("run-1")
    alive.join("run-1")
    push(dead, pickle.dumps("r1"))
    push(dead, pickle.dumps("r2"), priority=-1)
    dead.pop()
    dead.pop()
    assert alive.work_elsewhere()  # the dead worker holds leases
    assert alive.reap_dead_workers() == 0  # not dead yet: its heartbeat is fresh
    dead.server.delete(dead.keys.heartbeat("dead"))  # what 0.2 s of silence does
    assert alive.reap_dead_workers() == 2
    assert {alive.pop()[1], alive.pop()[1]} == {pickle.dumps("r1"), pickle.dumps("r2")}
    # the requeued page kept its priority: served after the package
    assert not alive.server.sismember(alive.keys.workers, "dead")


def test_pages_release_in_order_across_workers(redis_prefix):
    a, b = coordinator(redis_prefix, "a"), coordinator(redis_prefix, "b")
    assert a.open_page("p1", "100", "default", ["x", "y"])
    assert a.open_page("p2", "200", "default", ["z"])
    assert not b.units_done([("p2", "z")])  # p1 is still open
    assert not a.units_done([("p1", "x"), ("p1", "x")])  # a duplicate acknowledgement changes nothing
    assert b.units_done([("p1", "y")])
    assert a.released_cursors() == {"default": "200"}
    # a page re-opened after it completed (a re-queued feed page) is not registered again
    assert not a.open_page("p1", "100", "default", ["x"])
    assert a.release() == 0 and a.released_cursors() == {"default": "200"}


def test_a_queued_request_joins_its_pages_in_the_same_step(redis_prefix):
    a, b = coordinator(redis_prefix, "a"), coordinator(redis_prefix, "b")
    assert a.open_page("p1", "100", "default", ["opener"])
    # the opener's callback queued two requests of the page, one of them also in an inner page
    assert a.open_page("p2", "etag", "etag:/x", ["opener"])
    assert a.push(b"req-1", 0, None, [("p1", "u1")])
    assert a.push(b"req-2", 0, None, [("p1", "u2"), ("p2", "u2")])
    assert not a.units_done([("p1", "opener"), ("p2", "opener")])  # the page waits for what it queued
    assert not b.units_done([("p1", "u1")])
    assert b.units_done([("p1", "u2"), ("p2", "u2")])
    assert a.released_cursors() == {"default": "100", "etag:/x": "etag"}
    assert a.server.zcard(a.keys.queue) == 2


def test_the_newest_released_cursor_is_kept_whoever_released_it(redis_prefix):
    a, b = coordinator(redis_prefix, "a"), coordinator(redis_prefix, "b")
    a.open_page("p1", "100", "default", ["x"])
    a.open_page("p2", "200", "default", ["y"])
    b.units_done([("p2", "y")])  # the later page first: nothing released
    assert a.released_cursors() == {}
    a.units_done([("p1", "x")])
    assert b.released_cursors() == {"default": "200"}


def test_a_worker_taken_for_dead_rejoins_with_its_next_heartbeat(redis_prefix):
    slow, other = coordinator(redis_prefix, "slow", timeout=0.2), coordinator(redis_prefix, "other")
    slow.join("run")
    other.join("run")
    slow.server.delete(slow.keys.heartbeat("slow"))
    other.reap_dead_workers()
    assert not other.server.sismember(other.keys.workers, "slow")
    slow.heartbeat()  # it was only slow: it is a member again, so its leases count and are recoverable
    assert other.server.sismember(other.keys.workers, "slow")
    push(slow, b"pkg")
    slow.pop()
    assert other.work_elsewhere()


def test_leaving_after_a_failure_requeues_what_is_held_and_a_clean_finish_drops_it(redis_prefix):
    a, b = coordinator(redis_prefix, "a"), coordinator(redis_prefix, "b")
    a.join("run")
    b.join("run")
    push(a, b"r1")
    a.pop()
    assert a.leave(requeue=True) == 1
    assert b.pop()[1] == b"r1"  # back in the queue
    assert b.leave(requeue=False) == 1  # an orphan of a clean finish: dropped
    assert b.server.zcard(b.keys.queue) == 0


def test_empty_page_waits_for_the_pages_before_it(redis_prefix):
    a = coordinator(redis_prefix, "a")
    a.open_page("full:300", "300", "full", ["x"])
    a.open_page("full:", "", "full", [])
    a.open_page("default:300", "300", "default", [])
    assert a.release() == 0
    a.units_done([("full:300", "x")])
    assert a.released_cursors() == {"full": "", "default": "300"}


def test_first_worker_founds_the_run_and_the_last_clears_it(redis_prefix):
    a, b = coordinator(redis_prefix, "a"), coordinator(redis_prefix, "b")
    a.server.sadd(a.keys.dupefilter, "stale-fingerprint")  # left by an earlier run
    assert a.join("run-a") == (True, "run-a")
    assert not a.server.exists(a.keys.dupefilter)
    assert b.join("run-b") == (False, "run-a")
    assert a.work_elsewhere() and b.work_elsewhere()  # both still starting
    a.started()
    b.started()
    assert not a.work_elsewhere() and not b.work_elsewhere()
    a.server.sadd(a.keys.dupefilter, "fp")
    a.open_page("p1", "1", "default", ["x"])
    a.leave(requeue=False)
    assert a.server.exists(a.keys.dupefilter)  # b is still in the run
    b.leave(requeue=False)
    assert not a.server.exists(a.keys.dupefilter) and not a.server.exists(a.keys.run)
    assert not a.server.exists(a.keys.units("p1")) and not a.server.exists(a.keys.page("p1"))
    assert list(a.server.scan_iter(f"{redis_prefix}:*")) == []  # nothing of the run is left in Redis


def test_a_queue_left_by_killed_workers_is_resumed_not_cleared(redis_prefix):
    old = coordinator(redis_prefix, "old", timeout=0.2)
    old.join("run-old")
    push(old, b"pkg")
    old.pop()
    old.server.delete(old.keys.heartbeat("old"))  # killed
    new = coordinator(redis_prefix, "new")
    founder, run = new.join("run-new")
    assert (founder, run) == (False, "run-old")  # its leases went back to the queue: the run goes on
    assert new.pop()[1] == b"pkg"
