"""The ``whois://`` download handler on loopback: RFC 3912 exchange, server map, size cap, failures."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadCancelledError, DownloadConnectionRefusedError, DownloadTimeoutError
from scrapy.utils.test import get_crawler

from crawler.spiders.whois.spider import WhoisSpider
from crawler.spiders.whois.transport import WhoisDownloadHandler, parse_server_map


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def exchange(answer: bytes, url: str, *, delay: float = 0.0, **meta) -> tuple[bytes, list[bytes]]:
    """Serve one port-43 answer on loopback, map whois.example.test to it, download ``url``."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readline())
        await asyncio.sleep(delay)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    crawler = get_crawler(
        WhoisSpider,
        {"WHOIS_SERVER_MAP": json.dumps({"whois.example.test": f"127.0.0.1:{port}"}), "WHOIS_RATE": 100},
    )
    handler = WhoisDownloadHandler(crawler)
    try:
        # the per-request limits Scrapy sets from DOWNLOAD_MAXSIZE / DOWNLOAD_TIMEOUT
        response = await handler.download_request(Request(url, meta=meta))
        return response.body, received
    finally:
        server.close()


def test_the_query_goes_with_crlf_and_the_answer_is_read_to_the_close():
    body, received = asyncio.run(
        exchange(b"Domain: example.de\r\nStatus: connect\r\n", "whois://whois.example.test/-T%20dn,ace%20example.de")
    )
    assert received == [b"-T dn,ace example.de\r\n"]
    assert body == b"Domain: example.de\r\nStatus: connect\r\n"


def test_an_answer_over_the_size_cap_is_given_up():
    with pytest.raises(DownloadCancelledError):
        asyncio.run(exchange(b"x" * 200_000, "whois://whois.example.test/example.com", download_maxsize=100_000))


def test_a_slow_server_times_out():
    with pytest.raises(DownloadTimeoutError):
        asyncio.run(exchange(b"late\r\n", "whois://whois.example.test/example.com", delay=2, download_timeout=0.5))


def test_a_refused_connection_is_scrapys_refusal():
    crawler = get_crawler(
        WhoisSpider, {"WHOIS_SERVER_MAP": json.dumps({"whois.example.test": f"127.0.0.1:{free_port()}"})}
    )
    with pytest.raises(DownloadConnectionRefusedError):
        asyncio.run(WhoisDownloadHandler(crawler).download_request(Request("whois://whois.example.test/x.com")))


def test_the_server_map_needs_host_and_port():
    assert parse_server_map('{"Whois.Nic.UK": "127.0.0.1:4343"}') == {"whois.nic.uk": ("127.0.0.1", 4343)}
    assert parse_server_map("") == {}
    for bad in ('{"a": "nohost"}', "[1]", "{nope"):
        with pytest.raises(ValueError):
            parse_server_map(bad)
