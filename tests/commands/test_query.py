import csv
import io
import json

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def crawled(workspace, fake_npm, npm_env):
    names = sorted(fake_npm.package_names())[:5]
    workspace.crawl("npm", "packages=" + ",".join(names), **npm_env)
    return workspace, names


def test_query_formats(crawled):
    workspace, names = crawled
    sql = "SELECT name, dependencies, year FROM npm_package ORDER BY name"
    table = workspace.scrapy("query", sql).stdout
    assert table.splitlines()[1].split("|")[1].strip() == "name" and "(5 rows)" in table
    rows = json.loads(workspace.scrapy("query", "--format", "json", sql).stdout)
    assert [r["name"] for r in rows] == names and isinstance(rows[0]["dependencies"], dict)
    parsed = list(csv.DictReader(io.StringIO(workspace.scrapy("query", "--format", "csv", sql).stdout)))
    assert [r["name"] for r in parsed] == names
    out = workspace.path / "result.parquet"
    workspace.scrapy("query", "--format", "parquet", "--output", str(out), sql)
    assert pq.read_table(out).column("name").to_pylist() == names
    workspace.scrapy("query", "--format", "json", "--output", str(workspace.path / "r.json"), sql)
    assert len(json.loads((workspace.path / "r.json").read_text())) == 5


def test_query_errors_are_reported(crawled):
    workspace, _ = crawled
    failed = workspace.scrapy("query", "SELECT nope FROM npm_package", check=False)
    assert failed.returncode == 1 and "query failed" in failed.stderr
    assert workspace.scrapy("query", "--format", "parquet", "SELECT 1", check=False).returncode == 2
