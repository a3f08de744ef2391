"""WHOIS benchmark: domains/s at a fixed per-server rate limit with N servers, requests per domain, and
requests above any server's limit — against the loopback fakes (``tests.fakes.whois``).

``python -m bench.whois [--servers 4] [--rate 5] [--domains 400] [--port43-domains 120]``

The fakes serve ``--servers`` RDAP registries (one TLD each) and as many registrars, every server
allowing ``--rate`` requests/s (burst 2) and counting each request beyond it (answered 429, as the
real ones do). Each contender is a ``scrapy crawl whois -a domains_file=…`` subprocess on a fresh
data folder, with ``WHOIS_RATE`` at the servers' limit (``--margin`` below 1 leaves some slack). Every RDAP
host has its own loopback port, as real hosts do (sharing one, a client's per-host connection pool would
bunch requests that were sent on time):

* ``rdap-1``: the baseline, all domains on one registry (and one registrar): the rate of one server;
* ``rdap-N``: the same number of domains spread over N registries and N registrars;
* ``port43``: domains of two thin port-43 registries referring to two registrars (IANA, TLD, registrar);
* ``no-buckets``: ``rdap-N`` with the client's rate set far above the servers' (what politeness saves).

Printed per contender: domains stored, wall seconds (Scrapy's start-up included), domains/s over the
wall time and over the span between the first and last request the fakes saw, the ideal (servers x rate
/ requests per domain) and the span's share of it, requests per domain, requests above a server's limit. Then the
ratio of ``rdap-N`` to the baseline (ideal: N) and the targets, each PASS/FAIL: ≤ 2 requests per RDAP
domain, ≤ 3 per port-43 domain, 0 requests above any limit with the buckets on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tests.fakes.whois import IANA_WHOIS, FakeWhoisServices

ROOT = Path(__file__).resolve().parent.parent
#: real gTLDs (the crawl reduces names to registrable domains by the Public Suffix List)
TLDS = ["com", "net", "org", "info", "biz", "xyz", "online", "site", "shop", "app", "dev", "club", "top", "blog"]


def crawl(fake: FakeWhoisServices, domains: list[str], work: Path, rate: float) -> tuple[float, int]:
    """(wall seconds, records stored) of one crawl of ``domains``."""
    work.mkdir(parents=True, exist_ok=True)
    names = work / "domains.txt"
    names.write_text("\n".join(domains) + "\n")
    args = [sys.executable, "-m", "scrapy", "crawl", "whois", "-a", f"domains_file={names}"]
    settings = {
        **fake.settings(),
        "WHOIS_RATE": rate,
        "WHOIS_BURST": 2,
        "LOG_LEVEL": "WARNING",
        "RETRY_BACKOFF_BASE": 0.2,
        "RETRY_TIMES": 6,
        "SPIDERMON_ENABLED": "false",
    }
    for name, value in settings.items():
        args += ["-s", f"{name}={value}"]
    env = {
        **os.environ,
        "SCRAPY_SETTINGS_MODULE": "crawler.settings",
        "PYTHONPATH": str(ROOT),
        "STORAGE_URI": str(work / "data"),
        "BATCH_IDLE_SECONDS": "1",
    }
    started = time.perf_counter()
    subprocess.run(args, cwd=work, env=env, check=True, timeout=1800, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    stored = 0
    for path in (work / "data" / "whois").rglob("*.ndjson"):
        stored += sum(1 for line in path.read_bytes().splitlines() if line.strip())
    return seconds, stored


def run(name: str, fake: FakeWhoisServices, domains: list[str], rate: float, client_rate: float) -> dict[str, Any]:
    with fake.serve(), tempfile.TemporaryDirectory(prefix=f"bench-whois-{name}-") as folder:
        seconds, stored = crawl(fake, domains, Path(folder), client_rate)
        asked = sum(count for server, count in fake.requests.items() if server != IANA_WHOIS)
        iana = fake.requests.get(IANA_WHOIS, 0)
        servers = len([server for server in fake.requests if server != IANA_WHOIS])
        times = [when for server, _, when in fake.log if server != IANA_WHOIS]
    span = max(times) - min(times) if len(times) > 1 else seconds
    per_domain = (asked + iana) / max(len(domains), 1)
    # each domain costs asked/domains requests, spread over the servers, each serving `rate` a second
    ideal = servers * rate / max(asked / max(len(domains), 1), 1)
    return {
        "contender": name,
        "domains": len(domains),
        "stored": stored,
        "servers": servers,
        "wall_s": round(seconds, 1),
        "domains_per_s": round(stored / seconds, 2),
        "span_s": round(span, 1),
        "span_domains_per_s": round(stored / span, 2),
        "ideal_per_s": round(ideal, 2),
        "span_share_of_ideal": round(stored / span / ideal, 2),
        "requests_per_domain": round(per_domain, 2),
        "over_limit": sum(fake.over_limit.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=4, help="RDAP registries (and registrars) in rdap-N")
    parser.add_argument("--rate", type=float, default=5.0, help="requests/s every server allows")
    parser.add_argument("--domains", type=int, default=400)
    parser.add_argument("--port43-domains", type=int, default=120)
    parser.add_argument(
        "--margin",
        type=float,
        default=1.0,
        help="the client's WHOIS_RATE as a share of the servers' limit (default: exactly the limit)",
    )
    parser.add_argument("--json", type=Path, help="write the results here too")
    options = parser.parse_args()
    n, rate = options.servers, options.rate
    client = rate * options.margin
    if not 1 <= n <= len(TLDS):
        parser.error(f"--servers: 1..{len(TLDS)}")

    def spread(count: int, tlds: list[str]) -> list[str]:
        return [f"bench-{i}.{tlds[i % len(tlds)]}" for i in range(count)]

    results = [
        run(
            "rdap-1",
            FakeWhoisServices.with_servers(1, 1, TLDS, rate=rate),
            spread(options.domains, TLDS[:1]),
            rate,
            client,
        ),
        run(
            f"rdap-{n}",
            FakeWhoisServices.with_servers(n, n, TLDS, rate=rate),
            spread(options.domains, TLDS[:n]),
            rate,
            client,
        ),
        # two thin registries (.cc, .tv) refer to two registrars: four servers, IANA asked once per TLD
        run("port43", FakeWhoisServices(rate=rate), spread(options.port43_domains, ["cc", "tv"]), rate, client),
        run(
            "no-buckets",
            FakeWhoisServices.with_servers(n, n, TLDS, rate=rate),
            spread(options.domains, TLDS[:n]),
            rate,
            1000.0,
        ),
    ]
    columns = list(results[0])
    print(" | ".join(columns))
    for row in results:
        print(" | ".join(str(row[c]) for c in columns))
    base, spread_n, port43, unbucketed = results
    scaling = spread_n["span_domains_per_s"] / base["span_domains_per_s"]
    print(f"\nrdap-{n} / rdap-1 domains/s (span): {scaling:.2f} (ideal {n})")
    print(f"no-buckets: {unbucketed['over_limit']} requests above a server's limit (refused, retried)")
    targets = [
        ("RDAP requests per domain <= 2", max(base["requests_per_domain"], spread_n["requests_per_domain"]) <= 2),
        ("port-43 requests per domain <= 3", port43["requests_per_domain"] <= 3),
        (
            "0 requests above any server's limit",
            base["over_limit"] + spread_n["over_limit"] + port43["over_limit"] == 0,
        ),
        ("every domain stored", all(r["stored"] == r["domains"] for r in (base, spread_n, port43))),
    ]
    for label, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    if options.json:
        options.json.write_bytes(orjson.dumps({"results": results, "scaling": scaling}, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
