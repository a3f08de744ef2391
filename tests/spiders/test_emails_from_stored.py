"""The email-pattern source over what another source stored: ``-a from=github`` after a crawl of the
fake GitHub, offline and then with the Hunter fake; and no secret anywhere afterwards."""

from __future__ import annotations

import json
import sqlite3

import pyarrow.parquet as pq
import pytest

from tests.fakes.clearbit import FakeClearbit
from tests.fakes.email_people import LabelledDomain
from tests.fakes.github import FakeGitHub
from tests.fakes.hunter import FakeHunter

pytestmark = pytest.mark.slow
HUNTER_KEY = "hunter-key-5ecret-never-seen"
CLEARBIT_KEY = "clearbit-key-5ecret-never-seen"


def _evidence(row: dict) -> dict[str, dict]:
    evidence = row["evidence"] if isinstance(row["evidence"], list) else json.loads(row["evidence"])
    return {e["source"]: e for e in evidence}


@pytest.fixture
def crawled_github(workspace):
    with FakeGitHub(users=4, repos_per_user=2, commits_per_repo=12, seed=3).serve() as fake:
        repos = [r for r in fake.repo_names() if r not in fake.empty_repos and r not in fake.blocked_repos]
        workspace.crawl("github", "repos=" + ",".join(repos), GITHUB_API_URL=fake.url, GITHUB_TOKENS="t1")
        authors = {
            (c["commit"]["author"]["name"], c["commit"]["author"]["email"]) for r in repos for c in fake.commits(r)
        }
    return workspace, authors


def test_from_stored_commits_offline_then_with_hunter(crawled_github):
    workspace, authors = crawled_github
    corp = {email for _, email in authors if email.endswith("@corp.example")}
    assert len(corp) >= 3  # the fake's company domain, where most authors write first.last

    workspace.crawl("emails", "from=github")  # no key, no network: the stored commits only
    rows = {r["domain"]: r for r in workspace.query("SELECT * FROM email_patterns")}
    assert "corp.example" in rows
    assert not any("noreply" in domain for domain in rows)
    row = rows["corp.example"]
    assert row["pattern"] == "{first}.{last}"
    stored = _evidence(row)["stored:github"]
    assert stored["pattern"] == "{first}.{last}" and stored["count"] >= 3
    assert {s["address"] for s in row["samples"]} <= corp  # only addresses the commits published

    shown = workspace.scrapy("query", "SELECT domain, pattern, confidence, evidence FROM email_patterns").stdout
    assert "corp.example" in shown and "{first}.{last}" in shown and "stored:github" in shown

    # Hunter says otherwise about corp.example: both views are kept, the combined one follows the evidence
    hunter_view = LabelledDomain(
        "corp.example",
        "{f}{last}",
        "clean",
        2,
        [("Walter White", "wwhite@corp.example"), ("Jesse Pinkman", "jpinkman@corp.example")],
    )
    with FakeHunter(keys=[HUNTER_KEY], domains=0, extra=[hunter_view]).serve() as hunter:
        workspace.crawl(
            "emails",
            "from=github",
            "domains=corp.example",
            settings={"FRESHNESS_TTL_SECONDS": 0},
            HUNTER_API_URL=hunter.url,
            HUNTER_API_KEY=HUNTER_KEY,
        )
        assert hunter.requests["domain-search"] == 1
    row = workspace.query("SELECT * FROM email_patterns WHERE domain = 'corp.example'")[0]
    evidence = _evidence(row)
    assert evidence["hunter"]["pattern"] == "{f}{last}" and evidence["stored:github"]["pattern"] == "{first}.{last}"
    assert row["candidate"] in ("{first}.{last}", "{f}{last}")
    assert row["confidence"] < stored["confidence"] + 0.01  # a disagreement lowers it


def test_from_a_namespace_of_domains(crawled_github):
    workspace, _ = crawled_github
    homepages = workspace.query("SELECT count(*) AS n FROM github_repo WHERE homepage IS NOT NULL")[0]["n"]
    result = workspace.crawl("emails", "from=github/repos", check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    asked = workspace.meta().last_runs("emails", limit=1)[0]["stats"].get("emails/domains_asked", 0)
    assert (asked > 0) == (homepages > 0)


def test_an_unknown_source_is_a_usage_error(workspace):
    result = workspace.crawl("emails", "from=nothing-by-that-name", check=False)
    assert result.returncode != 0 and "not a source or namespace" in result.stderr


def test_no_secret_in_logs_stored_objects_or_the_metadata_db(crawled_github):
    workspace, _ = crawled_github
    companies = {"corp.example": {"name": "Corp", "addresses": ["erin.mitchell@corp.example"]}}
    people = {"erin.mitchell@corp.example": {"given": "Erin", "family": "Mitchell"}}
    with (
        FakeHunter(keys=[HUNTER_KEY], domains=3, credits=2).serve() as hunter,
        FakeClearbit(keys=[CLEARBIT_KEY], companies=companies, people=people).serve() as clearbit,
    ):
        env = {
            "HUNTER_API_URL": hunter.url,
            "HUNTER_API_KEY": HUNTER_KEY,
            "CLEARBIT_API_KEY": CLEARBIT_KEY,
            "CLEARBIT_COMPANY_URL": clearbit.company_url,
            "CLEARBIT_PERSON_URL": clearbit.person_url,
        }
        domains = ",".join([*hunter.cases, "corp.example", "bad domain"])
        # the key also on the command line (a setting), and every log line kept
        result = workspace.crawl(
            "emails",
            "from=github",
            f"domains={domains}",
            settings={"LOG_LEVEL": "DEBUG", "HUNTER_API_KEY": HUNTER_KEY},
            check=False,
            **env,
        )
        assert result.returncode == 1  # Hunter's credits ran out (429): finish reason hunter_usage_exhausted
        assert HUNTER_KEY in hunter.keys_seen and CLEARBIT_KEY in clearbit.keys_seen  # they were used
    log = result.stdout + result.stderr
    assert "domain-search" in log  # the requests are logged, without their headers
    secrets = (HUNTER_KEY, CLEARBIT_KEY)
    assert not [s for s in secrets if s in log]
    files = [p for p in workspace.data.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "meta.db" for p in files)
    for path in files:
        raw = path.read_bytes()
        assert not [s for s in secrets if s.encode() in raw], path
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str)
            assert not [s for s in secrets if s in text], path
    with sqlite3.connect(workspace.data / "_meta" / "meta.db") as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            dump = json.dumps(db.execute(f'SELECT * FROM "{table}"').fetchall(), default=str)
            assert not [s for s in secrets if s in dump], table
        assert db.execute("SELECT count(*) FROM failed_messages WHERE source = 'emails'").fetchone()[0] >= 1


def test_from_another_source_with_people_columns(workspace, npm_env, fake_npm):
    """Any source whose records declare (name, address) columns can be read. The npm fake's authors write
    handles as addresses (`t-0@example.com`), which follow no template: no domain has the evidence."""
    workspace.crawl("npm", "packages=" + ",".join(list(fake_npm.package_names())[:10]), **npm_env)
    workspace.crawl("emails", "from=npm")
    stats = workspace.meta().last_runs("emails", limit=1)[0]["stats"]
    assert stats["emails/stored/pairs"] >= 1
    assert stats.get("emails/domains_asked", 0) == 0  # no domain with two named addresses
