"""The raw-client baseline of ``bench.pypi_crawl``: asyncio + aiohttp, fetch and ``json.loads`` only.

The PyPI counterpart of ``bench.baselines.raw_client`` (same counts, same worker-pool design): the ceiling a
crawler could reach on this machine against this server. It requests ``<index>/pypi/<normalized name>/json``
and prints one JSON line with its counts; the parent measures its CPU time and peak RSS::

    python -m bench.baselines.raw_pypi_client --index-url http://127.0.0.1:PORT/ --names-file names.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote

import aiohttp
import yarl

from bench.baselines.raw_client import Counts

_NORMALIZE = re.compile(r"[-_.]+")


def project_urls(index_url: str, names: Sequence[str]) -> Iterator[yarl.URL]:
    """The JSON API URL of each project, by its PEP 503 normalized name (200 directly, no 301)."""
    base = index_url if index_url.endswith("/") else index_url + "/"
    for name in names:
        normalized = _NORMALIZE.sub("-", name).lower()
        # encoded=True: send exactly the URL the spiders send.
        yield yarl.URL(f"{base}pypi/{quote(normalized, safe='')}/json", encoded=True)


async def _worker(session: aiohttp.ClientSession, urls: Iterator[yarl.URL], counts: Counts) -> None:
    # One shared iterator: next() never awaits, so the workers cannot take the same URL twice.
    for url in urls:
        try:
            async with session.get(url, allow_redirects=False) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            counts.errors += 1
            counts.error_kinds[type(exc).__name__] += 1
            continue
        counts.statuses[status] += 1
        counts.response_bytes += len(body)
        if status != 200:
            counts.errors += 1
            continue
        try:
            doc = json.loads(body)
        except ValueError:
            counts.errors += 1
            counts.error_kinds["json"] += 1
            continue
        if isinstance(doc, dict):
            counts.items += 1


async def crawl(index_url: str, names: list[str], concurrency: int, timeout: float) -> Counts:
    counts = Counts()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"Accept": "application/json"},
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        shared = project_urls(index_url, names)
        await asyncio.gather(*(_worker(session, shared, counts) for _ in range(concurrency)))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.baselines.raw_pypi_client", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--index-url", required=True, help="the index base URL (serves pypi/<name>/json)")
    parser.add_argument("--names-file", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    started = time.perf_counter()
    counts = asyncio.run(crawl(args.index_url, names, args.concurrency, args.timeout))
    elapsed = time.perf_counter() - started
    report = asdict(counts)
    report.update(
        elapsed_seconds=round(elapsed, 3),
        concurrency=args.concurrency,
        requested=len(names),
        statuses={str(k): v for k, v in counts.statuses.items()},
    )
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if counts.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
