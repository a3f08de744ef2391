"""The platform's only uses of Scrapy's private (underscore) APIs, in one place.

Scrapy does not promise to keep these across releases. ``tests/test_scrapy_compat.py`` exercises each of
them against the installed Scrapy and names the Scrapy version when one has moved: after an upgrade,
fix them here (and nowhere else). This module imports nothing from Scrapy at import time, so that
``crawler/settings.py`` can use it.

* :data:`AIOHTTP_HANDLER`: the import path of Scrapy's experimental aiohttp download handler
  (``DOWNLOAD_HANDLERS``; it costs less CPU per response than the Twisted one, see ``bench/npm_crawl.py``).
* :func:`wake_engine`: make the engine ask its scheduler for requests now rather than at its next
  heartbeat (5 s); the distributed worker's poll (``crawler/distributed/extension.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AIOHTTP_HANDLER", "ScrapyCompatError", "wake_engine"]

#: ``scrapy.core.downloader.handlers._aiohttp`` is private while the handler is experimental
AIOHTTP_HANDLER = "scrapy.core.downloader.handlers._aiohttp.AiohttpDownloadHandler"


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
