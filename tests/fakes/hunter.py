"""Loopback fake of Hunter's ``GET /v2/domain-search`` (shape: Hunter's own wire fixture, see
``/work/shared/samples/hunter``).

* the key comes as the ``X-API-KEY`` header or the ``api_key`` query parameter; a missing or unknown
  key answers 401 (``{"errors": [{"id": "authentication_failed", "code": 401, ...}]}``);
* ``domain`` (required; not a domain: 400 ``invalid_domain``; a domain listed in ``bad_domains``: 422),
  ``limit`` (1-100, default 10) and ``offset`` page through ``data.emails``; ``meta.results`` is the total;
* rate limits: more than ``per_second`` requests in one second, or ``per_minute`` in a minute, answer 403
  ``too_many_requests`` (Hunter's 15/s and 500/min by default); the plan's ``credits`` (requests that
  returned data) spent: 429 ``usage_exceeded``;
* a domain listed in ``pending`` answers 202 (not ready) that many times first;
* every request is counted (``requests``), and the keys seen are kept (``keys_seen``) for the tests.

The domains and their people come from :mod:`tests.fakes.email_people` (the pattern there is the one
Hunter states), plus any given as ``extra``; an unknown domain answers an empty ``emails`` list and ``pattern: null``.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread, run_standalone
from tests.fakes.email_people import LabelledDomain, labelled_domains

try:  # the fixture is optional: the standalone process must not need pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]


def _error(status: int, id_: str, details: str) -> web.Response:
    body = {"errors": [{"id": id_, "code": status, "details": details}]}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class FakeHunter:
    def __init__(
        self,
        *,
        keys: Sequence[str] = ("test-hunter-key",),
        domains: int = 20,
        seed: int = 3,
        credits: int = 10_000,
        per_second: int = 15,
        per_minute: int = 500,
        bad_domains: Sequence[str] = (),
        pending: dict[str, int] | None = None,
        extra: Sequence[LabelledDomain] = (),
    ) -> None:
        self.keys = set(keys)
        self.credits = credits
        self.per_second = per_second
        self.per_minute = per_minute
        self.bad_domains = set(bad_domains)
        self.pending = dict(pending or {})
        self.cases = {case.domain: case for case in [*labelled_domains(domains, seed), *extra]}
        self.requests: collections.Counter[str] = collections.Counter()
        self.keys_seen: list[str] = []
        self.spent = 0
        self._recent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.url = ""

    def people(self, domain: str) -> list[dict[str, Any]]:
        """The domain's addresses as Hunter lists them (one entry per address, named when the commit was)."""
        case = self.cases.get(domain)
        if case is None:
            return []
        entries = []
        for index, (name, address) in enumerate(dict.fromkeys(case.pairs)):
            if not address.endswith("@" + domain):
                continue
            words = (name or "").split()
            first, last = (words[0], words[-1]) if len(words) >= 2 and "," not in name else (None, None)
            entries.append(
                {
                    "value": address,
                    "type": "personal",
                    "confidence": 60 + index * 7 % 40,
                    "sources": [
                        {
                            "domain": domain,
                            "uri": f"http://{domain}/team",
                            "extracted_on": "2026-01-08",
                            "last_seen_on": "2026-05-22",
                            "still_on_page": True,
                        }
                    ],
                    "first_name": first,
                    "last_name": last,
                    "position": None,
                    "position_raw": None,
                    "seniority": None,
                    "department": None,
                    "linkedin": None,
                    "twitter": None,
                    "phone_number": None,
                    "verification": {"date": "2026-06-10", "status": "valid"}
                    if index % 3 == 0
                    else {"date": None, "status": None},
                }
            )
        return entries

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/domain-search", self.domain_search)
        return app

    def _rate_limited(self) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] > 60:
                self._recent.popleft()
            last_second = sum(1 for t in self._recent if now - t <= 1)
            if last_second >= self.per_second or len(self._recent) >= self.per_minute:
                return True
            self._recent.append(now)
            return False

    async def domain_search(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-API-KEY") or request.query.get("api_key") or ""
        with self._lock:
            self.requests["domain-search"] += 1
            self.keys_seen.append(key)
        if key not in self.keys:
            return _error(401, "authentication_failed", "No user found for the API key supplied")
        if self._rate_limited():
            return _error(403, "too_many_requests", "You have reached the rate limit for this endpoint")
        if self.spent >= self.credits:
            return _error(429, "usage_exceeded", "You have exceeded your monthly requests quota")
        domain = (request.query.get("domain") or "").strip().lower()
        if not domain or "." not in domain or " " in domain:
            return _error(400, "invalid_domain", "You must send a valid domain name")
        if domain in self.bad_domains:
            return _error(422, "unprocessable_domain", "This domain cannot be searched")
        if self.pending.get(domain, 0) > 0:
            self.pending[domain] -= 1
            return web.Response(status=202, body=b"{}", content_type="application/json")
        try:
            limit = min(max(int(request.query.get("limit", 10)), 1), 100)
            offset = max(int(request.query.get("offset", 0)), 0)
        except ValueError:
            return _error(400, "wrong_params", "limit and offset must be integers")
        with self._lock:
            self.spent += 1
        people = self.people(domain)
        case = self.cases.get(domain)
        body = {
            "data": {
                "domain": domain,
                "disposable": False,
                "webmail": False,
                "accept_all": False,
                "pattern": case.pattern if case and people else None,
                "organization": domain.split(".")[0].title() if case else None,
                "linked_domains": [],
                "emails": people[offset : offset + limit],
            },
            "meta": {
                "results": len(people),
                "limit": limit,
                "offset": offset,
                "params": {"domain": domain, "company": None, "type": None, "seniority": None, "department": None},
            },
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeHunter]:
        with run_in_thread(self.make_app(), host, port, name="fake-hunter") as handle:
            self._bind(handle)
            yield self

    def _bind(self, handle: ServerHandle) -> dict[str, Any]:
        self.url = handle.base_url
        return {"url": self.url}


if pytest is not None:

    @pytest.fixture
    def fake_hunter() -> Iterator[FakeHunter]:
        with FakeHunter().serve() as fake:
            yield fake


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback fake of Hunter's domain search")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--keys", default="test-hunter-key")
    parser.add_argument("--credits", type=int, default=10_000)
    args = parser.parse_args(argv)
    fake = FakeHunter(keys=args.keys.split(","), domains=args.domains, credits=args.credits)
    run_standalone(fake.make_app(), args.host, args.port, fake._bind)


if __name__ == "__main__":
    main()
