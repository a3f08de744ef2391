"""The platform's main job, offline: sync every package of the bundled loopback npm registry and PyPI
into the embedded default (./data: local folder + SQLite), then query the result with DuckDB.

Run it with ``make demo``. It starts the fakes from ``tests/fakes`` on 127.0.0.1, runs a full sync of
each source, then an incremental one (which finds nothing new), and prints a query result; then reads the
same namespaces as Iceberg tables with PyIceberg alone, as another engine would, beside the row counts
`scrapy query` reports. Nothing leaves the machine.
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
WITH packages AS (
    SELECT 'npm' AS source, license, repository_url FROM npm_package WHERE NOT deleted
    UNION ALL
    SELECT 'pypi', license, repository_url FROM pypi_package WHERE NOT deleted
)
SELECT source, license, count(*) AS packages, count(repository_url) AS with_repository
FROM packages GROUP BY ALL ORDER BY packages DESC, source, license LIMIT 12
"""
COUNTS = (
    "SELECT 'npm_package' AS table_name, count(*) AS records FROM npm_package_history UNION ALL "
    "SELECT 'pypi_package', count(*) FROM pypi_package_history"
)


#: the log lines the demo shows of a crawl: its progress, what it stored, and anything wrong
SHOWN = ("progress:", "stored ", " WARNING: ", " ERROR: ", " CRITICAL: ", "error:", "exit status")


def scrapy(*args: str, env: dict[str, str]) -> None:
    print("$ scrapy " + " ".join(args), flush=True)
    if args[0] != "crawl":
        subprocess.run([sys.executable, "-m", "scrapy", *args], cwd=ROOT, env=env, check=True)
        return
    crawl = subprocess.Popen(
        [sys.executable, "-m", "scrapy", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    assert crawl.stderr is not None
    for line in crawl.stderr:
        if any(marker in line for marker in SHOWN):
            print("  " + line.split("] ", 1)[-1].rstrip(), flush=True)
    if crawl.wait() != 0:
        raise SystemExit(f"scrapy {' '.join(args)} exited {crawl.returncode}")


def start_fake(module: str, *args: str) -> tuple[subprocess.Popen, dict[str, str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            "1",
            "--size-profile",
            "realistic",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def main() -> None:
    fakes: list[subprocess.Popen] = []
    try:
        npm, npm_urls = start_fake("tests.fakes.npm", "--packages", str(PACKAGES))
        fakes.append(npm)
        pypi, pypi_urls = start_fake("tests.fakes.pypi", "--projects", str(PACKAGES))
        fakes.append(pypi)
        print(
            f"loopback npm registry at {npm_urls['registry_url']}, PyPI at {pypi_urls['url']}, "
            f"{PACKAGES} packages each",
            flush=True,
        )
        env = {
            **os.environ,
            "NPM_REGISTRY_URL": npm_urls["registry_url"],
            "NPM_CHANGES_URL": npm_urls["changes_url"],
            "PYPI_URL": pypi_urls["url"],
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "PROGRESS_INTERVAL": os.environ.get("PROGRESS_INTERVAL", "2"),
            "BATCH_IDLE_SECONDS": "2",
        }
        for source in ("npm", "pypi"):
            scrapy("crawl", source, "-a", "mode=full", env=env)
            scrapy("crawl", source, "-a", "mode=incremental", env=env)
        scrapy("query", QUERY.strip(), env=env)
        if env.get("ICEBERG_ENABLED", "true").lower() not in ("0", "false", "no", "off"):
            scrapy("query", COUNTS, env=env)
            read_with_pyiceberg(env)
    finally:
        for fake in fakes:
            fake.terminate()
            fake.wait(timeout=10)


def read_with_pyiceberg(env: dict[str, str]) -> None:
    """The tables as any Iceberg engine sees them: PyIceberg alone, on the catalog the crawls committed to
    (by default a SQL catalog in the metadata DB)."""
    from pyiceberg.catalog import load_catalog

    uri = env.get("ICEBERG_CATALOG_URI") or env.get("META_DB_URL")
    if uri is None:
        uri = "sqlite:///" + str((ROOT / env.get("STORAGE_URI", "data") / "_meta" / "meta.db").resolve())
    catalog = load_catalog("crawler", type="sql", uri=uri)
    print(f"$ PyIceberg: load_catalog('crawler', type='sql', uri={uri!r})", flush=True)
    for identifier in sorted(catalog.list_tables("crawler")):
        table = catalog.load_table(identifier)
        print(f"  {'.'.join(identifier)}: {table.scan().to_arrow().num_rows} records", flush=True)


if __name__ == "__main__":
    main()
