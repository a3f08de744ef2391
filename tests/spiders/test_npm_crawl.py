"""End-to-end crawls of the npm spider against the loopback fake registry."""

from __future__ import annotations

import pytest

from tests.fakes.npm import FakeNpmRegistry

pytestmark = pytest.mark.slow


def stored_names(workspace, view: str = "npm_package") -> set[str]:
    return {row["name"] for row in workspace.query(f"SELECT name FROM {view}")}


def test_named_packages_with_every_fault(workspace, fake_npm, npm_env):
    healthy = list(fake_npm.package_names())[:3]
    scoped = next(name for name in fake_npm.package_names() if name.startswith("@"))
    faults = [
        "fault-not-found",
        "fault-gone",
        "fault-unpublished",
        "fault-rate-limited",
        "fault-unavailable",
        "fault-malformed",
        "fault-truncated",
    ]
    workspace.crawl("npm", "packages=" + ",".join([*healthy, scoped, *faults]), exit_status=4, **npm_env)

    rows = {
        row["name"]: row
        for row in workspace.query(
            "SELECT name, version, deleted, unpublished, _source, _run_id, _schema_version, year FROM npm_package"
        )
    }
    assert set(healthy) | {scoped, "fault-rate-limited", "fault-unavailable", "fault-unpublished"} <= set(rows)
    assert rows[scoped]["version"] is not None
    # 429 and 503 with Retry-After were retried, not lost
    assert rows["fault-rate-limited"]["deleted"] is False
    assert rows["fault-unpublished"]["unpublished"] is True
    # 404 and 410 of names never stored (a typo) are dead letters, not tombstones
    assert "fault-not-found" not in rows and "fault-gone" not in rows
    assert {r["_source"] for r in rows.values()} == {"npm"}
    assert all(r["_schema_version"] == 1 and r["_run_id"] for r in rows.values())

    # bad input is a dead letter with its reason and a sample, and the crawl went on
    meta = workspace.meta()
    failed = {row["url"].rsplit("/", 1)[1]: row for row in meta.failed("npm")}
    assert set(failed) == {"fault-malformed", "fault-truncated", "fault-not-found", "fault-gone"}
    assert failed["fault-not-found"]["reason"] == failed["fault-gone"]["reason"] == "not_found"
    assert failed["fault-malformed"]["reason"].startswith("invalid_json")
    assert failed["fault-malformed"]["payload_sample"]
    assert failed["fault-truncated"]["reason"].startswith("download_error")
    run = meta.last_runs("npm")[0]
    assert run["finish_reason"] == "finished"
    assert run["items"] == len(rows) and run["dead_letters"] == 4 and run["bytes_written"] > 0


def test_a_named_package_stored_before_and_now_gone_is_a_tombstone(workspace, fake_npm, npm_env):
    name = sorted(fake_npm.package_names())[0]
    workspace.crawl("npm", f"packages={name}", **npm_env)
    fake_npm.delete(name)
    workspace.crawl("npm", f"packages={name}", **npm_env)
    (row,) = workspace.query(f"SELECT name, deleted FROM npm_package WHERE name = '{name}'")
    assert row["deleted"] is True
    assert workspace.meta().failed("npm") == []


def test_huge_packument_over_the_limit_is_a_dead_letter(workspace, fake_npm, npm_env):
    name = next(iter(fake_npm.package_names()))
    workspace.crawl(
        "npm", f"packages=fault-huge,{name}", settings={"DOWNLOAD_MAXSIZE": 5_000_000}, exit_status=4, **npm_env
    )
    assert stored_names(workspace) == {name}
    (failed,) = workspace.meta().failed("npm")
    assert failed["url"].endswith("/fault-huge")


def test_incremental_follows_the_feed_and_saves_the_cursor(workspace, fake_npm, npm_env):
    workspace.crawl("npm", "mode=incremental", settings={"NPM_CHANGES_PAGE_SIZE": 7}, **npm_env)
    names = set(fake_npm.package_names())
    assert stored_names(workspace) == names
    meta = workspace.meta()
    first_cursor = meta.get_cursor("npm")
    assert first_cursor == str(fake_npm.last_seq)

    # a second run reads only what changed since the cursor
    changed = sorted(names)[0]
    removed = sorted(names)[1]
    fake_npm.publish(changed)
    fake_npm.delete(removed)
    fake_npm.reset_counters()
    workspace.crawl("npm", "mode=incremental", **npm_env)
    packuments = [key for key in fake_npm.requests if key != "_changes"]
    assert packuments == [changed]  # only the republished package; the deletion needs no fetch
    latest = {row["name"]: row for row in workspace.query("SELECT name, deleted, rev FROM npm_package")}
    assert latest[removed]["deleted"] is True
    history = workspace.query(f"SELECT count(*) AS n FROM npm_package_history WHERE name = '{changed}'")
    assert history[0]["n"] == 2
    assert int(meta.get_cursor("npm")) > int(first_cursor)


def test_seq_reset_is_reported_and_replayed(workspace, fake_npm, npm_env):
    workspace.crawl("npm", "mode=incremental", **npm_env)
    fake_npm.reset_seq()
    fake_npm.publish("after-reset-package")
    workspace.crawl("npm", "mode=incremental", **npm_env)
    failed = workspace.meta().failed("npm")
    assert [row["reason"].split(":")[0] for row in failed] == ["seq_reset"]
    assert "after-reset-package" in stored_names(workspace)
    assert workspace.meta().get_cursor("npm") == str(fake_npm.last_seq)


def test_seq_reset_can_fail_the_crawl(workspace, fake_npm, npm_env):
    workspace.crawl("npm", "mode=incremental", **npm_env)
    cursor = workspace.meta().get_cursor("npm")
    fake_npm.reset_seq()
    workspace.crawl("npm", "mode=incremental", settings={"NPM_SEQ_RESET": "fail"}, exit_status=1, **npm_env)
    assert workspace.meta().last_runs("npm")[0]["finish_reason"] == "npm_seq_reset"
    assert workspace.meta().get_cursor("npm") == cursor


def test_stale_packument_is_refetched(workspace, npm_env):
    with FakeNpmRegistry(packages=3, seed=3, include_faults_in_changes=True).serve() as fake:
        env = {"NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        workspace.crawl("npm", "mode=incremental", exit_status=4, **env)
        assert fake.requests["fault-stale"] >= 2
        current_rev = fake.packument("fault-stale")["_rev"]
    (row,) = workspace.query("SELECT rev FROM npm_package WHERE name = 'fault-stale'")
    assert row["rev"] == current_rev


def test_full_mode_sets_the_incremental_cursor(workspace, fake_npm, npm_env):
    workspace.crawl("npm", "mode=full", settings={"NPM_CHANGES_PAGE_SIZE": 10}, **npm_env)
    assert stored_names(workspace) == set(fake_npm.package_names())
    meta = workspace.meta()
    assert meta.get_cursor("npm") == str(fake_npm.last_seq)
    assert meta.get_cursor("npm", "full") == ""


def test_missing_registry_configuration_is_a_clear_error(workspace):
    result = workspace.crawl(
        "npm", "packages=a", check=False, HOME=str(workspace.path), PATH="/nonexistent", npm_config_registry=""
    )
    assert result.returncode != 0
    assert "NPM_REGISTRY_URL" in result.stderr


def test_freshness_ttl_skips_names_stored_within_it(workspace, fake_npm, npm_env):
    names = sorted(fake_npm.package_names())[:4]
    workspace.crawl("npm", "packages=" + ",".join(names[:3]), **npm_env)
    fake_npm.reset_counters()
    workspace.crawl("npm", "packages=" + ",".join(names), settings={"FRESHNESS_TTL_SECONDS": 3600}, **npm_env)
    fetched = {key for key in fake_npm.requests if not key.startswith("_")}
    assert fetched == {names[3]}  # the three stored a moment ago are fresh
    run = workspace.meta().last_runs("npm")[0]
    assert run["stats"]["npm/fresh_skipped"] == 3 and run["items"] == 1

    fake_npm.reset_counters()
    workspace.crawl("npm", "packages=" + ",".join(names), **npm_env)  # the policy's default: no TTL
    assert {key for key in fake_npm.requests if not key.startswith("_")} == set(names)


def test_an_answer_for_another_package_is_a_dead_letter_not_a_record_of_it(workspace):
    """A mirror or proxy answering /victim with another package's document must not overwrite that package."""
    forged = {"name": "other-package", "dist-tags": {"latest": "6.6.6"}, "versions": {"6.6.6": {"name": "x"}}}
    with FakeNpmRegistry(packages=2, seed=1, extra={"victim": forged}).serve() as fake:
        workspace.crawl("npm", "packages=victim", exit_status=4, NPM_REGISTRY_URL=fake.registry_url)
    assert workspace.query("SELECT name FROM npm_package_history") == []
    (failed,) = workspace.meta().failed("npm")
    assert failed["reason"].startswith("key_mismatch: asked for 'victim'") and failed["url"].endswith("/victim")


@pytest.mark.parametrize("latency", [0.0, 0.3], ids=["fetched-before", "fetch-under-way"])
def test_a_package_announced_on_many_pages_is_fetched_once_at_its_newest_rev(workspace, latency):
    with FakeNpmRegistry(packages=40, seed=5, latency=latency).serve() as fake:
        names = sorted(fake.package_names())
        busy = names[0]
        # the package changes four more times, each change on a later page (pages of 10 changes)
        for round_ in range(4):
            newest = fake.publish(busy)
            for other in names[1 + round_ * 10 : 1 + round_ * 10 + 9]:
                fake.publish(other)
        env = {"NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        workspace.crawl("npm", "mode=incremental", settings={"NPM_CHANGES_PAGE_SIZE": 10}, **env)
        assert fake.requests[busy] == 1
        assert all(fake.requests[name] == 1 for name in names)
        assert workspace.meta().get_cursor("npm") == str(fake.last_seq)
    stored = workspace.query(f"SELECT rev FROM npm_package_history WHERE name = '{busy}'")
    assert stored == [{"rev": newest}]
    (run,) = workspace.meta().last_runs("npm")
    assert run["items"] == len(names) and run["stats"]["npm/fetched_once"] >= 4
