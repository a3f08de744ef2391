"""Helpers of the monitoring tests: the suite run on made-up stats, and loopback receivers.

The receivers (a webhook endpoint and an SMTP server) listen on 127.0.0.1 port 0 (no fixed port to
collide with), record what they receive, and stop when their ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, LoginPassword
from scrapy import Spider
from scrapy.settings import Settings
from spidermon import MonitorRunner

from crawler.monitors import SpiderCloseSuite

#: the monitoring crawls run with the project's own settings, where the monitors are enabled
SETTINGS_MODULE = "crawler.settings"

CLEAN = {
    "finish_reason": "finished",
    "item_scraped_count": 200,
    "downloader/response_count": 205,
    "run_id": "run-1",
}


class FakeStats(dict):
    """The part of Scrapy's StatsCollector the actions use."""

    def set_value(self, key: str, value: Any) -> None:
        self[key] = value

    def get_value(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)


def run_suite(
    stats: dict[str, Any],
    settings: dict[str, Any] | None = None,
    cmdline: dict[str, Any] | None = None,
    **spider_attributes: Any,
) -> tuple[Any, dict[str, str], FakeStats]:
    """Run the suite on ``stats`` with the data Spidermon gives it at spider close (its quiet runner).

    ``settings`` are set at the project's priority, ``cmdline`` at ``-s``'s; ``spider_attributes`` go on the
    spider. Returns Spidermon's result, {monitor name: status} and the stats the actions wrote.
    """
    project = Settings()
    project.setmodule(SETTINGS_MODULE, priority="project")
    project.setdict(settings or {}, priority="project")
    project.setdict(cmdline or {}, priority="cmdline")
    spider = Spider(name="npm", **spider_attributes)
    spider.source = "npm"
    # made-up stats describe a run whose records were all stored, unless they say otherwise
    stats = {"store/records": stats.get("item_scraped_count", 0), **stats}
    crawler = SimpleNamespace(settings=project, stats=FakeStats(), spider=spider)
    result = MonitorRunner().run(
        SpiderCloseSuite(), stats=stats, crawler=crawler, spider=spider, job=None, stats_history=[]
    )
    statuses = {item.item.monitor_name: item.status for item in result.monitor_results}
    return result, statuses, crawler.stats


@dataclass
class WebhookReceiver:
    """An HTTP endpoint that records the JSON bodies POSTed to it and answers ``status``."""

    status: int = 200
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    url: str = ""

    @contextmanager
    def serve(self) -> Iterator[WebhookReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.paths.append(self.path)
                receiver.posts.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@dataclass
class SmtpSink:
    """An SMTP server (aiosmtpd's protocol on its own event loop) that keeps every message it accepts.

    With ``user``/``password`` it requires AUTH LOGIN/PLAIN with them (over plain text: loopback only).
    """

    user: str | None = None
    password: str | None = None
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        # the default policy unfolds long headers (a subject over 78 characters is folded on the wire)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        return "250 OK"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
            self.user,
            self.password,
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    @contextmanager
    def serve(self) -> Iterator[SmtpSink]:
        loop = asyncio.new_event_loop()
        auth: dict[str, Any] = {}
        if self.user:
            auth = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        server = loop.run_until_complete(
            loop.create_server(lambda: SMTPProtocol(self, hostname="sink.test", **auth), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:

            async def shut_down() -> None:
                # on the server's own loop: closing it from this thread races the loop's own clean-up
                server.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(shut_down(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
