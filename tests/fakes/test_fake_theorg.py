"""Tests of the loopback TheOrg fake itself: robots.txt, page shapes, faults, search, the forward proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from crawler.spiders.theorg import pages
from tests.fakes.theorg import FAULT_DISALLOWED, FAULT_NOT_FOUND, FAULT_RATE_LIMITED, FakeProxy, FakeTheOrg

REPO_ROOT = Path(__file__).resolve().parents[2]


def get(url: str, proxy: str | None = None) -> tuple[int, dict[str, str], str]:
    handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_shapes_faults_search_and_robots():
    fake = FakeTheOrg(companies=3, retry_after=2)
    with fake.serve():
        status, _, robots = get(fake.url + "robots.txt")
        assert status == 200 and f"Disallow: /org/{FAULT_DISALLOWED}" in robots
        shapes = {}
        for slug in fake.slugs():
            status, headers, body = get(fake.url + f"org/{slug}")
            page = pages.selector(body)
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            shapes[slug] = "flight" if pages.next_data(page) is None else "next_data"
        assert list(shapes.values()) == ["next_data", "flight", "next_data"]  # the script page has props too
        status, headers, _ = get(fake.url + f"org/{FAULT_RATE_LIMITED}")
        assert status == 429 and headers["Retry-After"] == "2"
        assert get(fake.url + f"org/{FAULT_RATE_LIMITED}")[0] == 200  # only the first request is limited
        assert get(fake.url + f"org/{FAULT_NOT_FOUND}")[0] == 404
        _, _, body = get(fake.url + "search?q=company-0001.io")
        results = pages.next_data(pages.selector(body))["results"]
        assert [r["slug"] for r in results] == ["company-0001"]
        assert fake.requests["search"] == 1 and fake.requests["robots.txt"] == 1


def test_the_proxy_forwards_to_loopback_only_and_marks_what_it_forwarded():
    fake = FakeTheOrg(companies=1)
    with fake.serve(), FakeProxy("p1").serve() as proxy:
        assert get(fake.url + "org/company-0000", proxy=proxy.url)[0] == 200
        assert fake.requests["proxied/p1"] == 1 and proxy.forwarded == 1
        assert get("http://elsewhere.invalid/org/x", proxy=proxy.url)[0] == 403  # never anywhere else
        assert proxy.forwarded == 1


def test_standalone_mode_announces_its_url():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.theorg", "--port", "0", "--companies", "2", "--shapes", "flight"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(process.stdout.readline())
        status, _, body = get(info["url"] + "org/company-0000")
        assert status == 200 and pages.flight_chunks(pages.selector(body))
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0  # a clean stop on SIGTERM
