"""End-to-end crawls of the theorg spider against the loopback fake TheOrg, on the embedded default
(local folder, SQLite, DuckDB). The browser tests run Debian's Chromium for real (``.ci/run`` installs it)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from tests.fakes.theorg import (
    FAULT_BAD_POSITIONS,
    FAULT_BROKEN,
    FAULT_DISALLOWED,
    FAULT_EMPTY_CHART,
    FAULT_NOT_FOUND,
    FAULT_RATE_LIMITED,
    FAULTS,
    FakeProxy,
    FakeTheOrg,
)

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: skipped on a developer's machine without Chromium, never in CI (.ci/run installs it): there they fail
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
#: fast and bounded: no politeness delay, short browser waits, fault runs may have many dead letters
FAST = {
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": "false",
    "THEORG_BROWSER_TIMEOUT": 4,
    "MONITOR_MAX_ERROR_RATE": 1,
    "CLOSESPIDER_TIMEOUT": 90,
}
HIERARCHY = """
WITH RECURSIVE chart AS (
    SELECT p.id, p.parent_id, p.person_name, p.title, 0 AS depth, [p.id] AS path
    FROM (SELECT unnest(positions) AS p FROM orgs WHERE slug = '{slug}')
    WHERE p.parent_id IS NULL
  UNION ALL
    SELECT child.id, child.parent_id, child.person_name, child.title, chart.depth + 1, list_append(chart.path, child.id)
    FROM (SELECT unnest(positions) AS child FROM orgs WHERE slug = '{slug}') AS c(child)
    JOIN chart ON child.parent_id = chart.id
)
SELECT id, parent_id, depth, path, title FROM chart ORDER BY path
"""


def test_ci_has_chromium_for_the_browser_tests():
    if os.environ.get("CI"):
        assert CHROMIUM is not None, ".ci/run must install Chromium: the browser tests run for real in CI"


def expected_depths(fake: FakeTheOrg, slug: str) -> dict[str, int]:
    parents = {line["positionId"]: line["parentPositionId"] for line in fake.company(slug).data["reportingLines"]}
    depths: dict[str, int] = {}
    for position in fake.company(slug).data["positions"]:
        parent = parents.get(position["id"])
        depths[position["id"]] = 0 if parent is None else depths[parent] + 1
    return depths


def stored(workspace) -> dict[str, dict[str, Any]]:
    rows = workspace.query("SELECT slug, name, page_shape, deleted, len(positions) AS positions, domain FROM orgs")
    return {row["slug"]: row for row in rows}


def last_stats(workspace) -> dict[str, Any]:
    return workspace.meta().last_runs("theorg")[0]["stats"]


@needs_chromium
def test_every_page_shape_with_the_browser_only_where_needed(workspace):
    fake = FakeTheOrg(companies=6, shapes=("next_data", "flight", "script"), positions=9)
    with fake.serve():
        slugs = fake.slugs()
        # every rendered page in a new context; the memory watch samples often enough to see the browser
        settings = {**FAST, "THEORG_PAGES_PER_CONTEXT": 1, "MEMUSAGE_CHECK_INTERVAL_SECONDS": 0.5}
        workspace.crawl("theorg", "orgs=" + ",".join([*slugs, *FAULTS]), settings=settings, THEORG_URL=fake.url)
        requests = dict(fake.requests)

    rows = stored(workspace)
    assert set(rows) == {*slugs, FAULT_RATE_LIMITED}  # the faults store nothing, not even nulls
    for slug in slugs:
        shape = fake.company(slug).shape
        assert rows[slug]["page_shape"] == ("browser" if shape == "script" else shape)
        assert rows[slug]["positions"] == 9 and rows[slug]["name"] == fake.company(slug).data["company"]["name"]
        # the browser only where the HTML holds no chart: script pages twice (plain, then rendered)
        assert requests[f"org/{slug}"] == (2 if shape == "script" else 1), slug
    assert requests[f"org/{FAULT_RATE_LIMITED}"] == 2  # 429 + Retry-After, then read
    assert f"org/{FAULT_DISALLOWED}" not in requests and requests["robots.txt"] >= 1  # robots.txt obeyed
    assert "static" not in requests  # images and fonts never loaded by the browser

    failed = {row["url"].rsplit("/", 1)[-1]: row["reason"] for row in workspace.meta().failed("theorg")}
    assert failed[FAULT_BROKEN].startswith("shape_changed: __NEXT_DATA__ pageProps has no company")
    assert failed[FAULT_BAD_POSITIONS] == "invalid_record: ValueError: positions is not a list of objects"
    assert failed[FAULT_EMPTY_CHART] == "shape_changed: the rendered page has no chart"
    assert failed[FAULT_NOT_FOUND] == "not_found"
    assert "robots.txt" in failed[FAULT_DISALLOWED]
    assert set(failed) == {FAULT_BROKEN, FAULT_BAD_POSITIONS, FAULT_EMPTY_CHART, FAULT_NOT_FOUND, FAULT_DISALLOWED}

    stats = last_stats(workspace)
    rendered = 2 + 1  # the script companies and the empty chart
    assert stats["theorg/pages_browser"] == rendered and stats["theorg/browser_pages_closed"] == rendered
    # one context per rendered page, each closed once its page was
    assert stats["theorg/browser_contexts"] == stats["theorg/browser_contexts_closed"] == rendered
    assert stats["playwright/request_count/aborted"] >= rendered  # the font preload and logo of each page
    # the memory watch counts the browser's processes too, not the crawl process alone
    assert stats["memusage/max"] > stats["memusage/startup"] + 100 * 2**20

    # the org graph in SQL: a recursive query from the CEO down returns the hierarchy, whatever the shape
    for slug in slugs:
        chart = workspace.query(HIERARCHY.format(slug=slug))
        assert {row["id"]: row["depth"] for row in chart} == expected_depths(fake, slug)
        assert chart[0]["title"] == "Chief Executive Officer" and chart[0]["parent_id"] is None
        assert all(row["path"][-2] == row["parent_id"] for row in chart[1:])


def test_http_only_run_freshness_and_domains(workspace):
    fake = FakeTheOrg(companies=4, shapes=("next_data", "flight"))
    with fake.serve():
        env = {"THEORG_URL": fake.url}
        settings = {**FAST, "THEORG_BROWSER": "false"}
        workspace.crawl("theorg", "orgs=company-0000,company-0001", settings=settings, **env)
        assert set(stored(workspace)) == {"company-0000", "company-0001"}

        # stored within the 30-day TTL: not fetched again
        again = {**settings, "MONITOR_MIN_ITEMS": 0}
        workspace.crawl("theorg", "orgs=company-0000,company-0001", settings=again, **env)
        assert fake.requests["org/company-0000"] == fake.requests["org/company-0001"] == 1
        assert last_stats(workspace)["theorg/fresh_skipped"] == 2

        # by domain, through the site's search page; a domain of no company is a dead letter
        workspace.crawl("theorg", "domains=company-0002.io,nowhere.io", settings=settings, **env)
        assert stored(workspace)["company-0002"]["domain"] == "company-0002.io"
        assert fake.requests["search"] == 2
    reasons = [row["reason"] for row in workspace.meta().failed("theorg")]
    assert reasons == ["domain_not_found: no company on nowhere.io"]


def test_companies_behind_the_domains_another_source_stored(workspace):
    """``-a from=<source>``: the registrable domains of what another source stored, resolved by search."""
    from datetime import UTC, datetime

    from crawler.meta import MetaDB
    from crawler.pipelines.batching import Batch
    from crawler.pipelines.index import PartitionIndex
    from crawler.pipelines.writer import BatchWriter
    from crawler.sources import all_sources
    from crawler.storage import open_store

    (record_type,) = all_sources()["npm"].records
    store = open_store(str(workspace.data))
    now = datetime.now(UTC)
    batch = Batch(record_type, now.date())
    homepages = ["https://docs.company-0001.io/start", "https://www.company-0003.io/", "https://unknown.io/"]
    for n, homepage in enumerate(homepages):
        row = record_type(name=f"package-{n}", homepage=homepage).to_row()
        row.update(_source="npm", _ingested_at=now, _run_id="earlier", _schema_version=1)
        batch.add(row, n + 1)
    (workspace.data / "_meta").mkdir(parents=True)
    with MetaDB.connect(f"sqlite:///{workspace.data / '_meta' / 'meta.db'}") as meta:
        PartitionIndex(store, meta).record(BatchWriter(store).write(batch), "earlier")

    fake = FakeTheOrg(companies=4, shapes=("next_data", "flight"))
    with fake.serve():
        settings = {**FAST, "THEORG_BROWSER": "false"}
        workspace.crawl("theorg", "from=npm", settings=settings, THEORG_URL=fake.url)
    assert set(stored(workspace)) == {"company-0001", "company-0003"}
    reasons = [row["reason"] for row in workspace.meta().failed("theorg")]
    assert reasons == ["domain_not_found: no company on unknown.io"]


def test_a_script_page_without_a_browser_is_a_dead_letter_not_a_record(workspace):
    fake = FakeTheOrg(companies=3, shapes=("script",))
    with fake.serve():
        workspace.crawl(
            "theorg",
            "orgs=company-0000",
            settings={**FAST, "THEORG_BROWSER": "false", "MONITOR_MIN_ITEMS": 0},
            THEORG_URL=fake.url,
        )
    assert not (workspace.data / "orgs").exists()
    assert [row["reason"] for row in workspace.meta().failed("theorg")] == [
        "needs_browser: the chart is rendered by scripts"
    ]


def test_http_proxies_rotate_and_a_bad_one_is_benched(workspace):
    fake = FakeTheOrg(companies=4, shapes=("next_data",))
    with fake.serve(), FakeProxy("good").serve() as good:
        proxies = f"http://127.0.0.1:9,{good.url}"  # nothing listens on port 9
        settings = {**FAST, "THEORG_BROWSER": "false", "THEORG_PROXIES": proxies, "PROXY_BENCH_SECONDS": 60}
        workspace.crawl("theorg", "orgs=" + ",".join(fake.slugs()), settings=settings, THEORG_URL=fake.url)
        proxied = fake.requests["proxied/good"]
    assert set(stored(workspace)) == set(fake.slugs())
    assert proxied >= 4  # every page came through the good proxy in the end
    stats = last_stats(workspace)
    assert stats["proxies/benched"] >= 1


@needs_chromium
def test_browser_contexts_use_the_proxies_and_a_bad_one_is_benched(workspace):
    fake = FakeTheOrg(companies=3, shapes=("script",))
    with fake.serve(), FakeProxy("good").serve() as good:
        proxies = f"http://127.0.0.1:9,{good.url}"
        # a short bench: the bad proxy comes back into rotation, and a browser context gets it too
        settings = {
            **FAST,
            "THEORG_PROXIES": proxies,
            "PROXY_BENCH_SECONDS": 0.01,
            "THEORG_BROWSER_CONTEXTS": 1,
            "THEORG_PAGES_PER_CONTEXT": 1,
        }
        workspace.crawl("theorg", "orgs=" + ",".join(fake.slugs()), settings=settings, THEORG_URL=fake.url)
        proxied = fake.requests["proxied/good"]
    rows = stored(workspace)
    assert set(rows) == set(fake.slugs()) and {row["page_shape"] for row in rows.values()} == {"browser"}
    assert proxied >= 6  # each page over HTTP and in the browser, through the good proxy
    stats = last_stats(workspace)
    # a page that failed through the bad proxy benched it and retired its context; its retry got a new one
    assert stats["theorg/browser_proxies_benched"] >= 1 and stats["theorg/browser_failures"] >= 1
    assert stats["theorg/browser_contexts"] == stats["theorg/browser_contexts_closed"] >= 4


@needs_chromium
def test_the_memory_limit_stops_a_browser_crawl(workspace):
    fake = FakeTheOrg(companies=2, shapes=("script",))
    with fake.serve():
        settings = {**FAST, "THEORG_MEMORY_LIMIT_MB": 1, "MONITOR_MIN_ITEMS": 0}
        result = workspace.crawl(
            "theorg", "orgs=company-0000,company-0001", settings=settings, THEORG_URL=fake.url, check=False
        )
    assert result.returncode == 1  # the crawl did not finish
    run = workspace.meta().last_runs("theorg")[0]
    assert run["finish_reason"] == "memusage_exceeded" and run["stats"]["memusage/limit_reached"] == 1
