"""A plain Scrapy spider over the PyPI JSON API: the "stock Scrapy" baseline of ``bench.pypi_crawl``.

Run with ``scrapy runspider`` and Scrapy's *default* settings (no project, no ``SCRAPY_SETTINGS_MODULE``),
so it measures what Scrapy gives out of the box::

    scrapy runspider bench/baselines/stock_pypi_spider.py -a index_url=http://127.0.0.1:PORT/ \
        -a names_file=names.txt -o out.jsonl:jsonlines -s LOG_LEVEL=INFO

It deliberately imports nothing from ``crawler``: it must stay a stock spider. It requests
``<index>/pypi/<normalized name>/json`` (the URL that answers 200 directly, as the other contenders do) and
yields a handful of fields (name, version, summary, license, requires_dist, release count), built the naive way.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import scrapy
from scrapy.http import Response

_NORMALIZE = re.compile(r"[-_.]+")


class StockPypiSpider(scrapy.Spider):
    name = "stock_pypi"

    def __init__(self, index_url: str, names_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index_url = index_url if index_url.endswith("/") else index_url + "/"
        self.names_file = Path(names_file)

    async def start(self) -> AsyncIterator[Any]:
        with self.names_file.open(encoding="utf-8") as names:
            for line in names:
                name = line.strip()
                if name:
                    # PEP 503 normalized: a display name would get a 301 to this URL first.
                    normalized = _NORMALIZE.sub("-", name).lower()
                    yield scrapy.Request(
                        f"{self.index_url}pypi/{quote(normalized, safe='')}/json",
                        headers={"Accept": "application/json"},
                        callback=self.parse,
                    )

    def parse(self, response: Response) -> Iterator[dict[str, Any]]:
        doc = json.loads(response.body)
        if not isinstance(doc, dict):
            return
        info = doc.get("info") or {}
        releases = doc.get("releases") or {}
        yield {
            "name": info.get("name"),
            "version": info.get("version"),
            "summary": info.get("summary"),
            "license": info.get("license_expression") or info.get("license"),
            "requires_dist": info.get("requires_dist") or [],
            "release_count": len(releases),
        }
