"""The platform's only uses of Scrapy's private (underscore) APIs, in one place.

Scrapy does not promise to keep these across releases. ``tests/test_scrapy_compat.py`` exercises each of
them against the installed Scrapy and names the Scrapy version when one has moved: after an upgrade,
fix them here (and nowhere else). This module imports nothing from Scrapy at import time, so that
``crawler/settings.py`` can use it.

* :data:`AIOHTTP_HANDLER`: the import path of the download handler (``DOWNLOAD_HANDLERS``): Scrapy's
  experimental aiohttp handler (it costs less CPU per response than the Twisted one, see
  ``bench/npm_crawl.py``), as ``AiohttpHandler``, which does not log Scrapy's "experimental" warning at
  every crawl's start: the choice is the platform's, held to its tests, and nothing an operator can act on.
* :func:`wake_engine`: make the engine ask its scheduler for requests now rather than at its next
  heartbeat (5 s); the distributed worker's poll (``crawler/distributed/extension.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AIOHTTP_HANDLER", "ScrapyCompatError", "wake_engine"]

#: ``scrapy.core.downloader.handlers._aiohttp`` is private while the handler is experimental
AIOHTTP_HANDLER = "crawler.scrapy_compat.AiohttpHandler"


def __getattr__(name: str) -> Any:
    # built on first use, so that importing this module imports nothing from Scrapy
    if name == "AiohttpHandler":
        from scrapy.core.downloader.handlers._aiohttp import AiohttpDownloadHandler

        handler = type("AiohttpHandler", (AiohttpDownloadHandler,), {"experimental": False, "__module__": __name__})
        globals()[name] = handler
        return handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ScrapyCompatError(RuntimeError):
    """A private Scrapy API this module relies on is gone (a Scrapy upgrade moved it)."""


def _scrapy_version() -> str:
    import scrapy

    return scrapy.__version__


def wake_engine(engine: Any) -> bool:
    """Schedule the engine's next look at its scheduler (``ExecutionEngine._slot.nextcall``).

    Returns False when the engine has no open spider (not opened yet, or closed). Raises
    :class:`ScrapyCompatError` when the engine no longer has the private slot this relies on.
    """
    try:
        slot = engine._slot
    except AttributeError as exc:
        raise ScrapyCompatError(
            f"Scrapy {_scrapy_version()}: ExecutionEngine has no _slot; update crawler/scrapy_compat.wake_engine"
        ) from exc
    if slot is None:
        return False
    try:
        schedule = slot.nextcall.schedule
    except AttributeError as exc:
        raise ScrapyCompatError(
            f"Scrapy {_scrapy_version()}: the engine slot has no nextcall.schedule; "
            "update crawler/scrapy_compat.wake_engine"
        ) from exc
    schedule()
    return True
