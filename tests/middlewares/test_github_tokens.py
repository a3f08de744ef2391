import pytest
from scrapy.exceptions import IgnoreRequest

from crawler.spiders.github.middleware import TokenPool, resource_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_resource_of_urls_including_enterprise_prefixes():
    assert resource_of("http://127.0.0.1/search/commits?q=x") == "search"
    assert resource_of("https://ghe.test/api/v3/search/commits?q=x") == "search"
    assert resource_of("http://127.0.0.1/repos/o/r") == "core"


def test_no_request_on_a_token_with_nothing_left_before_its_reset():
    clock = Clock()
    pool = TokenPool(["a", "b"], clock)
    pool.observe(0, "core", remaining=1, reset=2000)
    pool.observe(1, "core", remaining=0, reset=1500)
    assert pool.acquire("core") == (0, 0.0)  # the only token with budget
    index, wait = pool.acquire("core")  # its last unit is in flight
    assert index is None and 499 < wait < 501  # token b resets first
    clock.now = 1500
    assert pool.acquire("core")[0] == 1  # b's window passed: usable again, budget unknown until answered


def test_in_flight_requests_count_against_the_budget():
    pool = TokenPool(["a"], Clock())
    pool.observe(0, "core", remaining=2, reset=5000)
    assert pool.acquire("core")[0] == 0
    assert pool.acquire("core")[0] == 0
    assert pool.acquire("core")[0] is None
    pool.release(0, "core")
    pool.observe(0, "core", remaining=1, reset=5000)  # one answered; the other may still spend the last unit
    assert pool.acquire("core")[0] is None
    pool.release(0, "core")
    pool.observe(0, "core", remaining=1, reset=5000)  # it came back 304: the unit is still there
    assert pool.acquire("core")[0] == 0


def test_rotation_prefers_the_token_with_more_left_and_resources_are_separate():
    pool = TokenPool(["a", "b"], Clock())
    pool.observe(0, "core", remaining=10, reset=5000)
    pool.observe(1, "core", remaining=900, reset=5000)
    assert pool.acquire("core")[0] == 1
    pool.exhaust(1, "search", reset=1060)
    assert pool.acquire("search")[0] == 0


def test_out_of_order_answers_keep_the_lowest_remaining():
    pool = TokenPool(["a"], Clock())
    pool.observe(0, "core", remaining=5, reset=5000)
    pool.observe(0, "core", remaining=7, reset=5000)
    assert pool.budget(0, "core").remaining == 5
    pool.observe(0, "core", remaining=4999, reset=8600)  # a new window
    assert pool.budget(0, "core").remaining == 4999


def test_revoked_tokens_are_not_used():
    pool = TokenPool(["a"], Clock())
    pool.revoked.add(0)
    with pytest.raises(IgnoreRequest):
        pool.acquire("core")


def test_a_paused_token_rests_while_another_works():
    clock = Clock()
    pool = TokenPool(["a", "b"], clock)
    pool.pause(0, 5)
    assert pool.acquire("core")[0] == 1
    pool.pause(1, 3)
    index, wait = pool.acquire("core")
    assert index is None and 3 <= wait < 3.1
    clock.now += 3
    assert pool.acquire("core")[0] == 1


def test_tokens_go_only_to_the_api_host_also_after_a_redirect():
    import asyncio

    from scrapy import Request
    from scrapy.utils.test import get_crawler

    from crawler.spiders.github.middleware import GithubRateLimitMiddleware

    crawler = get_crawler(settings_dict={"GITHUB_TOKENS": "ghp_secret1", "GITHUB_API_URL": "http://127.0.0.1:8767/"})
    middleware = GithubRateLimitMiddleware.from_crawler(crawler)
    api = Request("http://127.0.0.1:8767/users/octo")
    asyncio.run(middleware.process_request(api))
    assert api.headers[b"Authorization"] == b"Bearer ghp_secret1"
    # the API redirected the request to another host: Scrapy copies it, headers included
    moved = api.replace(url="http://127.0.0.2:8767/users/octo")
    asyncio.run(middleware.process_request(moved))
    assert b"Authorization" not in moved.headers
    other_port = api.replace(url="http://127.0.0.1:9999/users/octo")
    asyncio.run(middleware.process_request(other_port))
    assert b"Authorization" not in other_port.headers
