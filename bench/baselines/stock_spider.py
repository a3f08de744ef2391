"""A plain Scrapy spider over the npm packuments: the "stock Scrapy" baseline of ``bench.npm_crawl``.

Run with ``scrapy runspider`` and Scrapy's *default* settings (no project, no ``SCRAPY_SETTINGS_MODULE``),
so it measures what Scrapy gives out of the box::

    scrapy runspider bench/baselines/stock_spider.py -a registry_url=http://127.0.0.1:PORT/ \
        -a names_file=names.txt -o out.jsonl:jsonlines -s LOG_LEVEL=INFO

It deliberately imports nothing from ``crawler``: it must stay a stock spider. The record is the same handful
of fields the platform extracts (name, latest version, description, license, dependencies of the latest
version, maintainers, created/modified times, number of versions), built the naive way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import scrapy
from scrapy.http import Response


class StockNpmSpider(scrapy.Spider):
    name = "stock_npm"

    def __init__(self, registry_url: str, names_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry_url = registry_url if registry_url.endswith("/") else registry_url + "/"
        self.names_file = Path(names_file)

    async def start(self) -> AsyncIterator[Any]:
        with self.names_file.open(encoding="utf-8") as names:
            for line in names:
                name = line.strip()
                if name:
                    # Same URL as the platform's npm spider: a scoped name keeps its "@", its "/" is encoded.
                    yield scrapy.Request(
                        self.registry_url + quote(name, safe="@"),
                        headers={"Accept": "application/json"},
                        callback=self.parse,
                    )

    def parse(self, response: Response) -> Iterator[dict[str, Any]]:
        doc = json.loads(response.body)
        if not isinstance(doc, dict):
            return
        latest = (doc.get("dist-tags") or {}).get("latest")
        versions = doc.get("versions") or {}
        manifest = versions.get(latest) or {}
        times = doc.get("time") or {}
        yield {
            "name": doc.get("name") or doc.get("_id"),
            "version": latest,
            "description": manifest.get("description") or doc.get("description"),
            "license": manifest.get("license") or doc.get("license"),
            "dependencies": manifest.get("dependencies") or {},
            "maintainers": doc.get("maintainers") or [],
            "created": times.get("created"),
            "modified": times.get("modified"),
            "versions_count": len(versions),
        }
