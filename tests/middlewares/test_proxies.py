import pytest
from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from crawler.middlewares.proxies import ProxyRotationMiddleware
from crawler.spiders.npm.spider import NpmSpider


def middleware(proxies: str) -> ProxyRotationMiddleware:
    crawler = get_crawler(NpmSpider, {"NPM_PROXIES": proxies, "PROXY_BENCH_SECONDS": 10, "PROXY_BENCH_MAX": 25})
    return ProxyRotationMiddleware.from_crawler(crawler)


def test_not_configured_without_a_proxy_list():
    with pytest.raises(NotConfigured):
        middleware("")


def test_round_robin_over_the_source_list():
    mw = middleware("http://127.0.0.1:8001,http://127.0.0.1:8002")
    chosen = []
    for _ in range(4):
        request = Request("http://127.0.0.1/x")
        mw.process_request(request)
        chosen.append(request.meta["proxy"])
    assert chosen == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"] * 2


def test_failing_proxy_is_benched_with_growing_time():
    mw = middleware("http://127.0.0.1:8001,http://127.0.0.1:8002")
    request = Request("http://127.0.0.1/x")
    mw.process_request(request)
    bad = request.meta["proxy"]
    mw.process_response(request, Response("http://127.0.0.1/x", status=407))
    for _ in range(3):
        nxt = Request("http://127.0.0.1/x")
        mw.process_request(nxt)
        assert nxt.meta["proxy"] != bad
    mw.bench(bad, now=0.0)
    mw.bench(bad, now=0.0)
    benched = next(p for p in mw.proxies if p.url == bad)
    assert benched.benched_until == 25  # 10, 20, then capped at 25


def test_request_with_its_own_proxy_is_left_alone():
    mw = middleware("http://127.0.0.1:8001")
    request = Request("http://127.0.0.1/x", meta={"proxy": "http://127.0.0.1:9999"})
    mw.process_request(request)
    assert request.meta["proxy"] == "http://127.0.0.1:9999"
