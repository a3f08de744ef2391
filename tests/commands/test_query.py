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


def test_nested_values_are_json_in_csv_and_table_cells(crawled):
    workspace, names = crawled
    sql = "SELECT name, dependencies, keywords, maintainers FROM npm_package ORDER BY name"
    expected = {row["name"]: row for row in json.loads(workspace.scrapy("query", "--format", "json", sql).stdout)}
    for row in csv.DictReader(io.StringIO(workspace.scrapy("query", "--format", "csv", sql).stdout)):
        for column in ("dependencies", "keywords", "maintainers"):
            assert json.loads(row[column]) == expected[row["name"]][column]
    literal = "SELECT {'a': 1, 'b': 'x'} AS s, MAP {'k': 'v'} AS m, [1, 2] AS l"
    table = workspace.scrapy("query", literal).stdout
    assert '{"a":1,"b":"x"}' in table and '{"k":"v"}' in table and "[1,2]" in table
    assert "'a'" not in table  # not Python's repr


def test_several_statements_are_refused(crawled):
    workspace, _ = crawled
    result = workspace.scrapy("query", "SELECT 1; SELECT count(*) FROM npm_package", check=False)
    assert result.returncode == 2 and "give one SQL statement, got 2" in result.stderr
    assert result.stdout == ""


def test_querying_a_store_that_does_not_exist_creates_nothing(workspace):
    missing = workspace.path / "nothing-here"
    rows = json.loads(
        workspace.scrapy(
            "query", "--format", "json", "SELECT count(*) AS n FROM npm_package", STORAGE_URI=str(missing)
        ).stdout
    )
    assert rows == [{"n": 0}]
    assert not missing.exists()
