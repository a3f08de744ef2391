"""The email-pattern source's middleware (where the keys go, Hunter's budget) and its replay of dead letters."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from crawler.middlewares import CREDENTIAL_HEADERS_META
from crawler.spiders.emails.middleware import API_META, CLEARBIT, HUNTER, EmailsApiMiddleware, HunterBudget, NotSent

HUNTER_URL = "http://127.0.0.1:8768/"
SETTINGS = {
    "HUNTER_API_URL": HUNTER_URL,
    "HUNTER_API_KEY": "hk",
    "CLEARBIT_API_KEY": "ck",
    "CLEARBIT_COMPANY_URL": "http://127.0.0.2:81/v2/companies/find",
    "CLEARBIT_PERSON_URL": "http://127.0.0.3:82/v2/people/find",
    "HUNTER_RATE_LIMIT_RETRIES": 2,
}


def middleware(budget: int = 10, **settings: object) -> EmailsApiMiddleware:
    crawler = get_crawler(settings_dict={**SETTINGS, **settings})
    crawler.stats.open_spider()
    crawler.spider = SimpleNamespace(hunter_budget=HunterBudget(budget), clearbit_retired=None)
    return EmailsApiMiddleware.from_crawler(crawler)


def send(mw: EmailsApiMiddleware, url: str, api: str | None) -> Request:
    request = Request(url, meta={API_META: api} if api else {})
    asyncio.run(mw.process_request(request))
    return request


def test_each_key_goes_only_to_its_own_api_as_a_header():
    mw = middleware()
    hunter = send(mw, HUNTER_URL + "v2/domain-search?domain=c.example", HUNTER)
    assert hunter.headers[b"X-API-KEY"] == b"hk" and b"Authorization" not in hunter.headers
    assert hunter.meta[CREDENTIAL_HEADERS_META] == ["X-API-KEY"] and "hk" not in hunter.url
    for url in (SETTINGS["CLEARBIT_COMPANY_URL"], SETTINGS["CLEARBIT_PERSON_URL"]):
        clearbit = send(mw, url + "?domain=c.example", CLEARBIT)
        assert clearbit.headers[b"Authorization"] == b"Bearer ck" and b"X-API-KEY" not in clearbit.headers
    elsewhere = send(mw, "http://127.0.0.9/v2/domain-search", HUNTER)  # e.g. after a redirect
    assert b"X-API-KEY" not in elsewhere.headers and b"Authorization" not in elsewhere.headers
    carried = Request(HUNTER_URL, headers={"X-API-KEY": "hk"})  # a copy that left the API
    asyncio.run(mw.process_request(carried))
    assert b"X-API-KEY" not in carried.headers


def test_the_budget_is_counted_before_sending_and_never_exceeded():
    mw = middleware(budget=3)
    for _ in range(3):
        send(mw, HUNTER_URL + "v2/domain-search?domain=c.example", HUNTER)
    with pytest.raises(NotSent):
        send(mw, HUNTER_URL + "v2/domain-search?domain=c.example", HUNTER)
    assert mw.budget.sent == 3 and mw.budget.stopped == "budget_spent"
    assert mw.crawler.stats.get_value("emails/hunter/requests") == 3
    assert mw.crawler.stats.get_value("emails/hunter/not_sent") == 1


def respond(mw: EmailsApiMiddleware, request: Request, status: int, headers: dict | None = None):
    response = Response(request.url, status=status, headers=headers or {}, request=request)
    return asyncio.run(mw.process_response(request, response))


def test_429_stops_hunter_and_is_not_retried_and_401_too():
    mw = middleware()
    request = send(mw, HUNTER_URL + "v2/domain-search?domain=c.example", HUNTER)
    assert respond(mw, request, 429).status == 429 and request.meta["dont_retry"] is True
    assert mw.budget.stopped == "usage_exhausted"
    with pytest.raises(NotSent):
        send(mw, HUNTER_URL + "v2/domain-search?domain=d.example", HUNTER)
    mw = middleware()
    request = send(mw, HUNTER_URL + "v2/domain-search?domain=c.example", HUNTER)
    respond(mw, request, 401)
    assert mw.budget.stopped == "unauthorized"


def test_403_and_202_are_sent_again_after_a_back_off_a_bounded_number_of_times():
    mw = middleware()
    request = send(mw, HUNTER_URL + "v2/domain-search?domain=c.example", HUNTER)
    again = respond(mw, request, 403, {"Retry-After": "0"})
    assert isinstance(again, Request) and again.dont_filter
    again = respond(mw, again, 202, {"Retry-After": "0"})
    assert isinstance(again, Request)
    assert respond(mw, again, 403, {"Retry-After": "0"}).status == 403  # the third: given to the spider
    assert mw.crawler.stats.get_value("emails/hunter/resent/rate_limited") == 1
    assert mw.crawler.stats.get_value("emails/hunter/resent/not_ready") == 1


def test_a_retired_clearbit_sends_nothing_more():
    mw = middleware()
    mw.crawler.spider.clearbit_retired = "http_410"
    with pytest.raises(NotSent):
        send(mw, SETTINGS["CLEARBIT_COMPANY_URL"] + "?domain=c.example", CLEARBIT)


def test_dead_letters_replay_as_domains_computed_again():
    from crawler.spiders.emails.spider import EmailsSpider

    rows = [
        {"id": 1, "reason": "hunter_rate_limited: http_403", "url": HUNTER_URL + "v2/domain-search?domain=A.example"},
        {"id": 2, "reason": "hunter_bad_domain: http_422", "url": HUNTER_URL + "v2/domain-search?domain=b.example"},
        {"id": 3, "reason": "http_500", "url": "http://127.0.0.3:82/v2/people/find?email=x%40c.example"},
        {"id": 4, "reason": "invalid_answer", "url": None},
    ]
    assert EmailsSpider.replay_arguments(rows) == ({"domains": "a.example,c.example", "refresh": "true"}, [1, 3])
    assert EmailsSpider.replay_arguments(rows[1:2]) == ({}, [])
