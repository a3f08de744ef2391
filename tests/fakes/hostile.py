"""A hostile world on loopback: one server that answers every path of every source's API the same bad way.

The fault suite points every endpoint of a source at it (``tests/test_hostile_world.py``) and checks that
each answer ends as a dead letter — never a crash, a hang, a record of garbage or a blown memory. The
server is the suite's own, not a fake of any source: its answers follow no API.

Cases (``HostileServer.case``): compression bombs (gzip, deflate, brotli: a few hundred KB that inflate to
``BOMB_BYTES``), a huge body, deeply nested JSON, bytes that are not the declared encoding, a redirect loop,
a redirect to another host, a body trickling in, and a connection reset half way.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import brotli
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread

#: what a bomb inflates to: past every source's response cap
BOMB_BYTES = 512 * 1024 * 1024
HUGE_BYTES = 1024 * 1024 * 1024
CASES = (
    "gzip_bomb",
    "deflate_bomb",
    "brotli_bomb",
    "huge_body",
    "deep_json",
    "bad_encoding",
    "redirect_loop",
    "cross_host_redirect",
    "slow_body",
    "connection_reset",
)


@cache
def _bomb(kind: str) -> bytes:
    chunk = bytes(1024 * 1024)
    if kind == "br":
        compressor = brotli.Compressor(quality=5)
        parts = [compressor.process(chunk) for _ in range(BOMB_BYTES // len(chunk))]
        return b"".join(parts) + compressor.finish()
    wbits = 31 if kind == "gzip" else 15  # gzip container, or zlib's (HTTP "deflate")
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [compressor.compress(chunk) for _ in range(BOMB_BYTES // len(chunk))]
    return b"".join(parts) + compressor.flush()


class HostileServer:
    def __init__(self) -> None:
        self.case = CASES[0]
        self.requests = 0
        self.handle: ServerHandle | None = None

    @property
    def url(self) -> str:
        assert self.handle is not None
        return self.handle.base_url

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        case = self.case
        if case.endswith("_bomb"):
            kind = {"gzip_bomb": "gzip", "deflate_bomb": "deflate", "brotli_bomb": "br"}[case]
            return web.Response(
                body=_bomb(kind), headers={"Content-Encoding": kind, "Content-Type": "application/json"}
            )
        if case == "deep_json":
            depth = 200_000
            return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")
        if case == "bad_encoding":
            body = b'{"name": "\xff\xfe\xc3\x28 \xa0\xa1", "results": [\xf0\x28\x8c\xbc]}'
            return web.Response(body=body, headers={"Content-Type": "application/json; charset=utf-8"})
        if case == "redirect_loop":
            raise web.HTTPFound(location=str(request.rel_url))
        if case == "cross_host_redirect":
            if request.host.startswith("localhost"):
                return web.Response(body=b"<html>another host</html>", content_type="text/html")
            raise web.HTTPFound(location=f"http://localhost:{request.url.port}{request.rel_url}")
        return await self._stream(request, case)

    async def _stream(self, request: web.Request, case: str) -> web.StreamResponse:
        length = HUGE_BYTES if case == "huge_body" else 64 * 1024
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(length)})
        await response.prepare(request)
        if case == "huge_body":
            chunk = b" " * (1024 * 1024)
            for _ in range(length // len(chunk)):
                await response.write(chunk)
        elif case == "slow_body":
            for _ in range(length):
                await response.write(b" ")
                await asyncio.sleep(1.0)
        elif case == "connection_reset":
            await response.write(b'{"results": [' + b"1," * 1000)
            assert request.transport is not None
            request.transport.abort()
        return response


@contextmanager
def serve_hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    with run_in_thread(server.make_app(), name="hostile-server") as handle:
        server.handle = handle
        yield server
