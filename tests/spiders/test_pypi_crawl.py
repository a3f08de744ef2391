"""End-to-end crawls of the pypi spider against the loopback fake PyPI."""

from __future__ import annotations

import pytest

from crawler.spiders.pypi.records import normalize_name
from tests.fakes.pypi import FakePyPI

pytestmark = pytest.mark.slow


def latest(workspace) -> dict[str, dict]:
    return {
        row["name"]: row
        for row in workspace.query(
            "SELECT name, display_name, version, deleted, api, last_serial, license, summary, yanked_releases "
            "FROM pypi_package"
        )
    }


def test_named_projects_redirects_and_faults(workspace, pypi_env):
    with FakePyPI(projects=10, seed=5, include_faults=True).serve() as fake:
        names = fake.project_names()[:4]
        odd = next(n for n in fake.project_names() if n != normalize_name(n))
        faults = [
            "fault-not-found",
            "fault-malformed",
            "fault-rate-limited",
            "fault-unknown-fields",
            "fault-yanked-only",
            "fault-huge",
        ]
        workspace.crawl("pypi", "packages=" + ",".join([*names, odd, *faults]), exit_status=4, PYPI_URL=fake.url)
        expected_serial = fake.serial_of(odd)
    rows = latest(workspace)
    for name in [*names, odd]:
        row = rows[normalize_name(name)]
        assert row["display_name"] == name and row["version"] and row["api"] == "json"
    assert rows[normalize_name(odd)]["last_serial"] == expected_serial  # reached through the 301
    assert "fault-not-found" not in rows  # 404 of a name never stored: a dead letter, not a tombstone
    assert rows["fault-rate-limited"]["deleted"] is False  # 429 + Retry-After: retried, stored
    assert rows["fault-unknown-fields"]["license"] is None and rows["fault-unknown-fields"]["summary"] is None
    assert rows["fault-yanked-only"]["yanked_releases"]
    assert rows["fault-huge"]["version"]
    failed = {row["reason"].split(":")[0]: row["url"] for row in workspace.meta().failed("pypi")}
    assert set(failed) == {"invalid_json", "not_found"}
    assert "fault-malformed" in failed["invalid_json"] and "fault-not-found" in failed["not_found"]


@pytest.mark.parametrize("simple_format", ["json", "html"])
def test_full_listing_then_incremental_fetches_only_changes(workspace, simple_format):
    with FakePyPI(projects=30, seed=9, simple_format=simple_format).serve() as fake:
        env = {"PYPI_URL": fake.url}
        workspace.crawl("pypi", "mode=full", settings={"PYPI_PAGE_SIZE": 7}, **env)
        assert set(latest(workspace)) == {normalize_name(n) for n in fake.project_names()}
        meta = workspace.meta()
        assert meta.get_cursor("pypi", "full") == ""
        assert meta.get_cursor("pypi", "serial") == str(fake.last_serial)
        assert meta.last_runs("pypi")[0]["stats"]["pypi/backlog"] == 0  # counted down as the pages are done

        changed, removed = fake.project_names()[3], fake.project_names()[4]
        fake.publish(changed)
        fake.delete(removed)
        fake.reset_counters()
        workspace.crawl("pypi", "mode=incremental", **env)
        fetched = {key for key in fake.requests if key not in ("/simple/", "rss")}
        if simple_format == "json":
            # serials tell exactly what changed: one project fetched, the deletion needs no fetch
            assert fetched == {normalize_name(changed)}
        else:
            # an HTML index has no per-project serials: every project is fetched again
            assert normalize_name(changed) in fetched and len(fetched) >= 29
        rows = latest(workspace)
        assert rows[normalize_name(removed)]["deleted"] is True
        # only the project gone from the index is tombstoned (an HTML index without serials included)
        tombstones = workspace.query("SELECT name FROM pypi_package_history WHERE deleted")
        assert [row["name"] for row in tombstones] == [normalize_name(removed)]
        assert rows[normalize_name(changed)]["last_serial"] == fake.serial_of(changed)
        assert workspace.meta().get_cursor("pypi", "serial") == str(fake.last_serial)


def test_mirror_without_json_api(workspace):
    with FakePyPI(projects=6, seed=2, json_api=False).serve() as fake:
        workspace.crawl("pypi", "mode=full", PYPI_URL=fake.url)
        names = fake.project_names()
    rows = latest(workspace)
    assert set(rows) == {normalize_name(n) for n in names}
    for row in rows.values():
        assert row["api"] == "simple" and row["version"] and not row["deleted"]
    # core metadata filled the fields the simple page lacks, where the mirror served it
    assert any(row["summary"] for row in rows.values())


def test_pip_configuration_gives_the_default_index(workspace, fake_pypi):
    name = fake_pypi.project_names()[0]
    workspace.crawl("pypi", f"packages={name}", PIP_INDEX_URL=fake_pypi.url + "simple/")
    assert normalize_name(name) in latest(workspace)


def test_incremental_refuses_an_index_implausibly_smaller_than_what_is_stored(workspace):
    with FakePyPI(projects=20, seed=9).serve() as fake:
        env = {"PYPI_URL": fake.url}
        workspace.crawl("pypi", "mode=full", **env)
        for name in fake.project_names()[:12]:  # the index now lists 8 of the 20 stored projects
            fake.delete(name)
        workspace.crawl("pypi", "mode=incremental", exit_status=1, **env)
    assert not any(row["deleted"] for row in latest(workspace).values())  # nothing mass-deleted
    meta = workspace.meta()
    assert [row["reason"].split(":")[0] for row in meta.failed("pypi")] == ["index_implausible"]
    assert meta.last_runs("pypi")[0]["finish_reason"] == "pypi_index_implausible"
