"""The source's transports: port-43 WHOIS as a Scrapy download handler, and HTTP behind the buckets.

``whois://<server>[:port]/<query>`` (RFC 3912): connect to the server (or where ``WHOIS_SERVER_MAP``
sends it), send the query and CRLF, read until the server closes. The answer is a plain
:class:`~scrapy.http.Response` with the raw bytes (the spider decodes them, UTF-8 else Latin-1), so
retries, per-server concurrency, stats and the pipelines stay ordinary Scrapy. Failures are Scrapy's
download exceptions (refused, timeout, lost data), retried by the retry middleware like HTTP ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import unquote

from scrapy import Request
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.crawler import Crawler
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
)
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler, load_object

from crawler.scrapy_compat import AIOHTTP_HANDLER
from crawler.spiders.whois.politeness import ServerBuckets, parse_json_map

logger = logging.getLogger(__name__)
WHOIS_PORT = 43
READ_CHUNK = 64 * 1024


def parse_server_map(raw: Any) -> dict[str, tuple[str, int]]:
    """``WHOIS_SERVER_MAP``: host name -> (host, port)."""
    mapped = {}
    for name, target in parse_json_map(raw, "WHOIS_SERVER_MAP").items():
        host, _, port = str(target).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f'WHOIS_SERVER_MAP: {name!r} -> {target!r}: expected "host:port"')
        mapped[name] = (host.strip("[]"), int(port))
    return mapped


class WhoisDownloadHandler(BaseDownloadHandler):
    """RFC 3912 over asyncio; see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        settings = crawler.settings
        self.server_map = parse_server_map(settings.get("WHOIS_SERVER_MAP"))
        self.max_bytes = settings.getint("DOWNLOAD_MAXSIZE")
        self.timeout = settings.getfloat("DOWNLOAD_TIMEOUT", 30.0)
        self.buckets = ServerBuckets.of(crawler)

    async def download_request(self, request: Request) -> Response:
        parts = urlparse_cached(request)
        server = (parts.hostname or "").lower()
        host, port = self.server_map.get(server, (server, parts.port or WHOIS_PORT))
        query = unquote(parts.path.removeprefix("/"))
        await self.buckets.acquire(request, self.crawler)
        timeout = float(request.meta.get("download_timeout", self.timeout))
        try:
            async with asyncio.timeout(timeout):
                max_bytes = request.meta.get("download_maxsize", self.max_bytes)
                body = await self._ask(host, port, query, max_bytes=max_bytes)
        except TimeoutError:
            raise DownloadTimeoutError(f"{server}: no complete answer within {timeout:g} s") from None
        except ConnectionRefusedError as exc:
            raise DownloadConnectionRefusedError(f"{server}: {exc}") from None
        except OSError as exc:
            if "Name or service not known" in str(exc) or "nodename" in str(exc):
                raise CannotResolveHostError(f"{server}: {exc}") from None
            raise DownloadFailedError(f"{server}: {type(exc).__name__}: {exc}") from None
        return Response(
            request.url,
            status=200,
            body=body,
            headers={"Content-Type": "text/plain"},
            request=request,
            flags=["whois"],
        )

    @staticmethod
    async def _ask(host: str, port: int, query: str, *, max_bytes: int) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(query.encode("utf-8") + b"\r\n")
            await writer.drain()
            chunks: list[bytes] = []
            size = 0
            while chunk := await reader.read(READ_CHUNK):
                size += len(chunk)
                if max_bytes and size > max_bytes:
                    raise DownloadCancelledError(f"answer over {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class PoliteHttpDownloadHandler(BaseDownloadHandler):
    """The project's HTTP handler, after a token from the request's server bucket."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.inner = build_from_crawler(load_object(AIOHTTP_HANDLER), crawler)
        self.buckets = ServerBuckets.of(crawler)

    async def download_request(self, request: Request) -> Response:
        await self.buckets.acquire(request, self.crawler)
        return await self.inner.download_request(request)

    async def close(self) -> None:
        await self.inner.close()
