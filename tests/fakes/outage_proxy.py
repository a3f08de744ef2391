"""A TCP proxy on loopback that can be told to fail: the fault suite puts it between a crawl and its object
store (or metadata DB) to stage an outage.

Modes: ``pass`` (forward), ``refuse`` (close every new connection at once, as a host that is down), and
``blackhole`` (accept and never answer, as a dead network path). Changing the mode also cuts the
connections already open, so a client holding a pooled connection meets the outage too — unless told not
to (``cut=False``): then a connection open when the path goes dark stops carrying bytes, and a client
waiting on it waits for ever (what a long-lived database connection meets).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes._server import check_loopback

MODES = ("pass", "refuse", "blackhole")


class OutageProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        check_loopback(target_host)
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.port = 0
        self.refused = 0
        self.darkened = 0  # connections held unanswered, or whose bytes were dropped, in blackhole mode
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str, *, cut: bool = True) -> None:
        """Switch mode; open connections are cut (unless ``cut`` is false), so the next request meets the
        new mode."""
        assert mode in MODES, mode
        self.mode = mode
        if cut:
            self._loop.call_soon_threadsafe(self._cut_all)

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            self.refused += 1
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode == "blackhole":
            self.darkened += 1
            return  # held open, never answered, until the mode changes
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(upstream_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if self.mode == "blackhole":
                        self.darkened += 1
                        # the path went dark: these bytes and all later ones are lost, the connection
                        # stays open (until the client gives it up, which cuts it)
                        await self._stopping.wait()
                        return
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(upstream_writer)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._stopping = asyncio.Event()
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()
        server.close()
        self._cut_all()
        self._stopping.set()  # connections held by a black hole end
        self._loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(self._loop), return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()


@contextmanager
def outage_proxy(target_host: str, target_port: int) -> Iterator[OutageProxy]:
    proxy = OutageProxy(target_host, target_port)
    started = threading.Event()
    thread = threading.Thread(target=proxy._run, args=(started,), name="outage-proxy", daemon=True)
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("the outage proxy did not start")
    try:
        yield proxy
    finally:
        proxy._loop.call_soon_threadsafe(proxy._loop.stop)
        thread.join(timeout=10)
