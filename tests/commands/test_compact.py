import pytest

pytestmark = pytest.mark.slow


def test_scrapy_compact_after_two_syncs(workspace, fake_npm, npm_env):
    for _ in range(2):
        workspace.crawl("npm", "mode=full", settings={"BATCH_MAX_RECORDS": 20}, **npm_env)
    packages = len(set(fake_npm.package_names()))
    (before,) = workspace.query("SELECT count(*) AS n FROM npm_package_history")
    assert before["n"] == 2 * packages
    result = workspace.scrapy("compact", "npm", "--no-progress")
    assert f"-> 1 files / {packages} rows" in result.stdout
    (after,) = workspace.query("SELECT count(*) AS n, count(DISTINCT name) AS names FROM npm_package_history")
    assert after == {"n": packages, "names": packages}
    parquet = list((workspace.data / "npm").rglob("*.parquet"))
    assert len(parquet) == 1 and parquet[0].name.startswith("compacted_")
    assert workspace.scrapy("compact", "pypi", "--no-progress").stdout.startswith("pypi: 0 partition(s)")
    bad = workspace.scrapy("compact", "nope", check=False)
    assert bad.returncode != 0 and "give one namespace" in bad.stderr
