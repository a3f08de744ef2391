"""Run an aiohttp application on loopback: in a background thread (tests) or as the main program.

Source-agnostic on purpose: every fake in ``tests/fakes`` (npm, PyPI, GitHub, ...) builds its own
``web.Application`` and hands it to :func:`run_in_thread` or :func:`run_standalone`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["ServerHandle", "check_loopback", "run_in_thread", "run_standalone", "serve_forever"]

# Pending handlers (e.g. a deliberately slow response) must not hold up a test's teardown or a SIGTERM.
DEFAULT_SHUTDOWN_TIMEOUT = 1.0


def check_loopback(host: str) -> None:
    """Refuse any bind address that is not loopback: the fakes must never be reachable from elsewhere."""
    if host == "localhost":
        return
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"fake servers bind to a loopback address only, got {host!r}") from exc
    if not addr.is_loopback:
        raise ValueError(f"fake servers bind to a loopback address only, got {host!r}")


@dataclass(frozen=True)
class ServerHandle:
    """Where a running fake listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        """``http://host:port/`` (always with the trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def url(self, path: str = "") -> str:
        return self.base_url + path.lstrip("/")


async def _start(
    app: web.Application, host: str, port: int, shutdown_timeout: float
) -> tuple[web.AppRunner, ServerHandle]:
    check_loopback(host)
    # access_log=None: formatting a log line per request would dominate the cost of a small response.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    # reuse_port=False so two fakes can never silently share (and split) one port.
    site = web.TCPSite(runner, host, port, reuse_port=False, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, ServerHandle(host=str(bound_host), port=int(bound_port))


@contextmanager
def run_in_thread(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    name: str = "fake-server",
) -> Iterator[ServerHandle]:
    """Serve ``app`` from a daemon thread with its own event loop; yields once the socket is listening."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    def _thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            runner, handle = loop.run_until_complete(_start(app, host, port, shutdown_timeout))
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
            started.set()
            loop.close()
            return
        box["handle"] = handle
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=_thread_main, name=name, daemon=True)
    thread.start()
    if not started.wait(timeout=30):
        raise RuntimeError(f"{name} did not start within 30 s")
    if "error" in box:
        thread.join(timeout=5)
        raise box["error"]
    try:
        yield box["handle"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=shutdown_timeout + 10)


async def serve_forever(
    app: web.Application,
    host: str,
    port: int,
    on_ready: Callable[[ServerHandle], None],
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly; ``on_ready`` runs once listening."""
    runner, handle = await _start(app, host, port, shutdown_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        on_ready(handle)
        await stop.wait()
    finally:
        await runner.cleanup()


def run_standalone(
    app: web.Application,
    host: str,
    port: int,
    describe: Callable[[ServerHandle], dict[str, Any]],
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Main-program mode: print one JSON line (``describe(handle)`` plus ``pid``) once listening, serve
    until SIGTERM/SIGINT. The line is how a parent process (benchmark, test) learns the ephemeral port."""

    def _announce(handle: ServerHandle) -> None:
        info = dict(describe(handle))
        info["pid"] = os.getpid()
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()

    asyncio.run(serve_forever(app, host, port, _announce, shutdown_timeout=shutdown_timeout))
