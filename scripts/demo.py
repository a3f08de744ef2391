"""The platform's main job, offline: sync every package of the bundled loopback npm registry into the
embedded default (./data: local folder + SQLite), then query the result with DuckDB.

Run it with ``make demo``. It starts the fake registry from ``tests/fakes`` on 127.0.0.1, runs
``scrapy crawl npm -a mode=full`` then ``-a mode=incremental`` (which finds nothing new), and prints a
query result. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = int(os.environ.get("DEMO_PACKAGES", "500"))
QUERY = """
SELECT license, count(*) AS packages, round(avg(versions_count), 1) AS avg_versions,
       count(*) FILTER (WHERE deprecated IS NOT NULL) AS deprecated
FROM npm_package WHERE NOT deleted GROUP BY license ORDER BY packages DESC, license LIMIT 10
"""


def scrapy(*args: str, env: dict[str, str]) -> None:
    print("$ scrapy " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "scrapy", *args], cwd=ROOT, env=env, check=True)


def main() -> None:
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.npm",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--packages",
            str(PACKAGES),
            "--seed",
            "1",
            "--size-profile",
            "realistic",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = json.loads(fake.stdout.readline())
        print(f"fake npm registry with {PACKAGES} packages at {urls['registry_url']}", flush=True)
        env = {
            **os.environ,
            "NPM_REGISTRY_URL": urls["registry_url"],
            "NPM_CHANGES_URL": urls["changes_url"],
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "BATCH_IDLE_SECONDS": "2",
        }
        scrapy("crawl", "npm", "-a", "mode=full", env=env)
        scrapy("crawl", "npm", "-a", "mode=incremental", env=env)
        scrapy("query", QUERY.strip(), env=env)
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
