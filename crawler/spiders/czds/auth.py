"""The CZDS access token: one login, renewed before its ``exp``, and once more after a 401.

Requests whose meta has :data:`NEEDS_TOKEN_META` get ``Authorization: Bearer <token>``. The token comes
from ``POST <CZDS_AUTH_URL>/api/authenticate`` (JSON credentials) and lasts 24 hours; its JWT ``exp``
says when. The service answers 429 after 8 logins per 5 minutes per IP, so logins are shared: one at a
time, none while the token is good. A 401 with the current token drops it and the request is sent once
more (``czds/relogins``); a second 401 goes to the spider. A login that fails for good (bad credentials,
429 after the retries) fails every request that needs the token, without logging in again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import orjson
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response

from crawler.spiders.czds.source import SOURCE

logger = logging.getLogger(__name__)
#: request meta: the request needs the access token
NEEDS_TOKEN_META = "czds_token"
#: request meta: sent again after a 401
RELOGIN_META = "czds_relogin"
#: assumed lifetime of a token whose ``exp`` cannot be read (the service documents 24 h)
DEFAULT_LIFETIME = 24 * 3600.0


class LoginFailed(IgnoreRequest):
    """No access token: the login was refused (the reason names the status, never the credentials)."""


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (Unix seconds) of a JWT, or None when it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(claims["exp"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None


class TokenMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        options = SOURCE.read_settings(crawler.settings)
        if not options["CZDS_AUTH_URL"]:
            raise NotConfigured("CZDS_AUTH_URL is not set")
        self.login_url = options["CZDS_AUTH_URL"].rstrip("/") + "/api/authenticate"
        self.username = options["CZDS_USERNAME"]
        self.password = options["CZDS_PASSWORD"]
        self.renew_before = options["CZDS_TOKEN_RENEW_SECONDS"]
        self.token: str | None = None
        self.expires = 0.0
        self.failure: str | None = None
        self._lock: asyncio.Lock | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TokenMiddleware:
        if getattr(crawler.spidercls, "source", None) != SOURCE.name:
            raise NotConfigured("only the CZDS spider's requests carry its token")
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        if not request.meta.get(NEEDS_TOKEN_META):
            return
        token = await self.current_token()
        request.headers["Authorization"] = f"Bearer {token}"

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if response.status != 401 or not request.meta.get(NEEDS_TOKEN_META) or request.meta.get(RELOGIN_META):
            return response
        sent = (request.headers.get("Authorization") or b"").decode().removeprefix("Bearer ")
        if sent == self.token:  # not already replaced by a request that came back before this one
            self.token = None
        self.crawler.stats.inc_value("czds/relogins")
        logger.info("czds: 401 for %s: logging in again once", request.url)
        retry = request.replace(dont_filter=True)
        retry.meta[RELOGIN_META] = True
        return retry

    async def current_token(self) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.failure is not None:
                raise LoginFailed(self.failure)
            if self.token is None or time.time() >= self.expires - self.renew_before:
                await self._login()
            assert self.token is not None
            return self.token

    async def _login(self) -> None:
        if not self.username or not self.password:
            self.failure = "czds_login_failed: set CZDS_USERNAME and CZDS_PASSWORD"
            raise LoginFailed(self.failure)
        request = Request(
            self.login_url,
            method="POST",
            body=orjson.dumps({"username": self.username, "password": self.password}),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            dont_filter=True,
            priority=100,
        )
        self.crawler.stats.inc_value("czds/logins")
        response = await self.crawler.engine.download_async(request)
        token = None
        if response.status == 200:
            try:
                answer: Any = orjson.loads(response.body)
                token = answer.get("accessToken") if isinstance(answer, dict) else None
            except orjson.JSONDecodeError:
                token = None
        if not isinstance(token, str) or not token:
            self.failure = f"czds_login_failed: http_{response.status}" + (
                "" if response.status != 200 else " without an accessToken"
            )
            logger.error("czds: login refused (%s); no zone can be listed or downloaded", self.failure)
            raise LoginFailed(self.failure)
        expiry = token_expiry(token)
        if expiry is None:
            logger.warning("czds: the access token has no readable exp; assuming it lasts 24 h")
            expiry = time.time() + DEFAULT_LIFETIME
        self.token, self.expires = token, expiry
        logger.info(
            "czds: logged in; the token expires at %s UTC", time.strftime("%Y-%m-%d %H:%M", time.gmtime(expiry))
        )
