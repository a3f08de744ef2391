"""Each private Scrapy API of crawler/scrapy_compat.py, exercised against the installed Scrapy.

A failure here after a Scrapy upgrade means the upgrade moved one of them: fix crawler/scrapy_compat.py.
"""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import scrapy
from scrapy.utils.misc import load_object

from crawler.scrapy_compat import AIOHTTP_HANDLER, ScrapyCompatError, wake_engine

ROOT = Path(__file__).resolve().parent.parent
UPGRADE = f"Scrapy {scrapy.__version__} moved a private API: update crawler/scrapy_compat.py"

# A real crawl on the asyncio reactor, as `scrapy crawl` runs one: the only request is handed to the
# scheduler after the spider has opened and then the engine is woken. Without the wake, the engine asks
# its scheduler again only at its next heartbeat, 5 s later. The request goes to a loopback HTTP server
# through the aiohttp handler of AIOHTTP_HANDLER.
PROBE = """
import json, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import scrapy
from scrapy import Request, Spider, signals
from scrapy.crawler import AsyncCrawlerProcess

from crawler.scrapy_compat import AIOHTTP_HANDLER, wake_engine


class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
threading.Thread(target=server.serve_forever, daemon=True).start()
URL = f"http://127.0.0.1:{server.server_address[1]}/"
result = {}


class LateScheduler:
    '''Holds one request that appears after the spider opened; pending until it is handed out.'''

    def __init__(self):
        self.request = None
        self.handed = False

    @classmethod
    def from_crawler(cls, crawler):
        return cls()

    def open(self, spider):
        pass

    def close(self, reason):
        pass

    def has_pending_requests(self):
        return not self.handed

    def enqueue_request(self, request):
        return False

    def next_request(self):
        if self.request is None or self.handed:
            return None
        self.handed = True
        result["dequeued_after"] = time.monotonic() - result["released_at"]
        return self.request


class Probe(Spider):
    name = "probe"

    async def start(self):
        return
        yield

    def parse(self, response):
        result["status"] = response.status
        result["body"] = response.text


def release(crawler):
    crawler.engine.scheduler.request = Request(URL, callback=crawler.spider.parse)
    result["released_at"] = time.monotonic()
    result["woken"] = wake_engine(crawler.engine)


process = AsyncCrawlerProcess(
    {
        "SCHEDULER": "__main__.LateScheduler",
        "DOWNLOAD_HANDLERS": {"http": AIOHTTP_HANDLER},
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }
)
crawler = process.create_crawler(Probe)


def opened(spider):
    import asyncio

    # after the engine's own first look at the (then empty) scheduler
    asyncio.get_event_loop().call_later(0.5, release, crawler)


crawler.signals.connect(opened, signal=signals.spider_opened)
process.crawl(crawler)
process.start()
result["finish_reason"] = crawler.stats.get_value("finish_reason")
print(json.dumps(result))
"""


def test_aiohttp_handler_path_loads_a_download_handler():
    try:
        handler = load_object(AIOHTTP_HANDLER)
    except (ImportError, AttributeError, NameError) as exc:
        pytest.fail(f"{UPGRADE}: AIOHTTP_HANDLER {AIOHTTP_HANDLER!r} does not load: {exc}")
    assert inspect.isclass(handler), f"{UPGRADE}: {AIOHTTP_HANDLER!r} is not a class"
    for method in ("from_crawler", "download_request", "close"):
        assert hasattr(handler, method), f"{UPGRADE}: {AIOHTTP_HANDLER!r} has no {method}()"


def test_settings_use_the_compat_handler():
    from crawler import settings

    assert settings.DOWNLOAD_HANDLERS == {"http": AIOHTTP_HANDLER, "https": AIOHTTP_HANDLER}


@pytest.mark.slow
def test_wake_engine_makes_a_running_engine_ask_its_scheduler_now():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and out.stdout.strip(), f"{UPGRADE}: the probe crawl failed:\n{out.stderr[-4000:]}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["woken"] is True, f"{UPGRADE}: wake_engine found no open engine slot"
    assert result["status"] == 200 and result["body"] == "ok", f"{UPGRADE}: the aiohttp handler did not download"
    # the engine's heartbeat would have taken ~4.5 s
    assert result["dequeued_after"] < 1.0, f"{UPGRADE}: wake_engine did not wake the engine ({result})"
    assert result["finish_reason"] == "finished"


def test_wake_engine_fails_loudly_when_the_engine_slot_is_gone():
    class EngineWithoutSlot:
        pass

    with pytest.raises(ScrapyCompatError, match=rf"Scrapy {scrapy.__version__}: ExecutionEngine has no _slot"):
        wake_engine(EngineWithoutSlot())


def test_wake_engine_is_a_no_op_on_a_closed_engine():
    class ClosedEngine:
        _slot = None

    assert wake_engine(ClosedEngine()) is False
