"""The raw-client baseline of ``bench.npm_crawl``: asyncio + aiohttp, fetch and ``json.loads`` only.

It is the ceiling a crawler could reach on this machine against this server: a connection-limited session,
a fixed pool of workers pulling names (no task per URL, no scheduler, no retries, no storage). It prints one
JSON line with its counts; the parent measures its CPU time and peak RSS::

    python -m bench.baselines.raw_client --registry-url http://127.0.0.1:PORT/ --names-file names.txt
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import yarl


@dataclass
class Counts:
    items: int = 0
    errors: int = 0
    response_bytes: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    error_kinds: collections.Counter[str] = field(default_factory=collections.Counter)


async def _worker(session: aiohttp.ClientSession, base: str, names: Iterator[str], counts: Counts) -> None:
    # One shared iterator: next() never awaits, so the workers cannot take the same name twice.
    for name in names:
        # encoded=True: send exactly the URL the spiders send (yarl would otherwise re-normalize "%2F").
        url = yarl.URL(base + quote(name, safe="@"), encoded=True)
        try:
            async with session.get(url) as response:
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


async def crawl(registry_url: str, names: list[str], concurrency: int, timeout: float) -> Counts:
    base = registry_url if registry_url.endswith("/") else registry_url + "/"
    counts = Counts()
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"Accept": "application/json"},
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        shared = iter(names)
        await asyncio.gather(*(_worker(session, base, shared, counts) for _ in range(concurrency)))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.raw_client", description=__doc__.split("\n")[0])
    parser.add_argument("--registry-url", required=True)
    parser.add_argument("--names-file", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    started = time.perf_counter()
    counts = asyncio.run(crawl(args.registry_url, names, args.concurrency, args.timeout))
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
