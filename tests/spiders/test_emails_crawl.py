"""End-to-end crawls of the emails spider against the loopback fakes of Hunter and Clearbit."""

from __future__ import annotations

import json

import pytest

from tests.fakes.clearbit import FakeClearbit
from tests.fakes.hunter import FakeHunter

pytestmark = pytest.mark.slow
KEY = "hk-secret-never-to-be-seen"


def hunter_env(fake: FakeHunter, **more: str) -> dict[str, str]:
    return {"HUNTER_API_URL": fake.url, "HUNTER_API_KEY": KEY, **more}


def crawl_failing_monitors(workspace, *arguments: str, **kw):
    """A crawl whose dead letters are too many for the monitors' error rate (5 %): exit status 4."""
    result = workspace.crawl("emails", *arguments, check=False, **kw)
    assert result.returncode == 4, result.stderr[-3000:]
    assert "the monitors failed" in result.stderr
    return result


def records(workspace) -> dict[str, dict]:
    rows = workspace.query("SELECT * FROM email_patterns ORDER BY domain")
    return {row["domain"]: row for row in rows}


def last_run(workspace) -> dict:
    return workspace.meta().last_runs("emails", limit=1)[0]


def dead_letters(workspace) -> list[str]:
    return [row["reason"] for row in workspace.meta().failed("emails")]


def _evidence(row: dict) -> dict[str, dict]:
    evidence = row["evidence"] if isinstance(row["evidence"], list) else json.loads(row["evidence"])
    return {e["source"]: e for e in evidence}


def test_hunter_pages_through_each_domain_and_states_its_pattern(workspace):
    with FakeHunter(keys=[KEY], domains=12, seed=3).serve() as fake:
        domains = [d for d, case in fake.cases.items() if len(fake.people(d)) >= 6][:3]
        workspace.crawl("emails", "domains=" + ",".join(domains), settings={"HUNTER_PAGE_SIZE": 5}, **hunter_env(fake))
        pages = [-(-len(fake.people(d)) // 5) for d in domains]
        assert fake.requests["domain-search"] == sum(min(p, 3) for p in pages)  # every page, at most 3 a domain
        assert any(p > 1 for p in pages)  # paging was needed
        assert set(fake.keys_seen) == {KEY}
    stored = records(workspace)
    assert set(stored) == set(domains)
    for domain in domains:
        row = stored[domain]
        assert row["pattern"] == fake.cases[domain].pattern
        assert 0.6 <= row["confidence"] <= 1
        hunter = _evidence(row)["hunter"]
        assert hunter["pattern"] == fake.cases[domain].pattern and hunter["count"] > 0
        assert row["organization"] == domain.split(".")[0].title()
        assert row["webmail"] is False and row["accept_all"] is False
        assert row["verified"] >= 1
        assert all(s["address"].endswith("@" + domain) for s in row["samples"])
    run = last_run(workspace)
    assert run["stats"]["emails/hunter/spent"] == fake.requests["domain-search"]


def test_a_second_run_within_24_hours_asks_nothing(workspace):
    with FakeHunter(keys=[KEY], domains=4).serve() as fake:
        domains = ",".join(list(fake.cases)[:3])
        workspace.crawl("emails", f"domains={domains}", **hunter_env(fake))
        asked = fake.requests["domain-search"]
        workspace.crawl("emails", f"domains={domains}", **hunter_env(fake))
        assert fake.requests["domain-search"] == asked
        assert last_run(workspace)["stats"]["emails/fresh_skipped"] == 3
        workspace.crawl("emails", f"domains={domains}", "refresh=true", **hunter_env(fake))
        assert fake.requests["domain-search"] == 2 * asked  # asked for: computed again


def test_the_credit_budget_is_never_exceeded_and_every_domain_still_gets_its_record(workspace):
    with FakeHunter(keys=[KEY], domains=8).serve() as fake:
        domains = list(fake.cases)[:6]
        workspace.crawl(
            "emails", "domains=" + ",".join(domains), settings={"HUNTER_MAX_REQUESTS": 3}, **hunter_env(fake)
        )
        assert fake.requests["domain-search"] == 3
    stored = records(workspace)
    assert set(stored) == set(domains)
    assert sum("hunter" in _evidence(row) for row in stored.values()) <= 3
    stats = last_run(workspace)["stats"]
    assert stats["emails/hunter/spent"] == 3 and stats["emails/hunter/budget"] == 3
    assert stats["emails/hunter/skipped/budget_spent"] >= 3
    assert dead_letters(workspace) == []


def test_plan_usage_exhausted_stops_spending_and_finishes_with_a_clear_reason(workspace):
    with FakeHunter(keys=[KEY], domains=8, credits=2).serve() as fake:
        domains = list(fake.cases)[:6]
        result = workspace.crawl(
            "emails",
            "domains=" + ",".join(domains),
            settings={"CONCURRENT_REQUESTS": 1},
            check=False,
            **hunter_env(fake),
        )
        assert fake.requests["domain-search"] == 3  # two answered, the third said 429: nothing after it
    assert result.returncode == 1, result.stderr[-2000:]  # scrapy crawl's status: the run did not finish
    run = last_run(workspace)
    assert run["finish_reason"] == "hunter_usage_exhausted"
    assert dead_letters(workspace).count("hunter_usage_exhausted: http_429") == 1
    assert set(records(workspace)) == set(domains)


def test_a_bad_key_is_reported_once_and_hunter_is_left_alone(workspace):
    with FakeHunter(keys=["another"], domains=6).serve() as fake:
        domains = list(fake.cases)[:5]
        crawl_failing_monitors(
            workspace, "domains=" + ",".join(domains), settings={"CONCURRENT_REQUESTS": 1}, **hunter_env(fake)
        )
        assert fake.requests["domain-search"] == 1
    assert dead_letters(workspace) == ["hunter_unauthorized: http_401"]
    assert len(records(workspace)) == 5


def test_bad_domains_are_dead_letters_and_rate_limits_are_waited_out(workspace):
    with FakeHunter(keys=[KEY], domains=6, bad_domains=["rejected.example"], per_second=2, pending={}).serve() as fake:
        good = list(fake.cases)[:4]
        fake.pending[good[0]] = 1
        crawl_failing_monitors(
            workspace,
            "domains=" + ",".join([*good, "rejected.example"]),
            # four at a time against 2 a second: re-sends collide, so allow a few more of them
            settings={"DOWNLOAD_DELAY": 0, "HUNTER_RATE_LIMIT_RETRIES": 8},
            **hunter_env(fake),
        )
    stored = records(workspace)
    assert set(stored) == set(good)  # the rejected domain has no record
    assert dead_letters(workspace) == ["hunter_bad_domain: http_422"]
    stats = last_run(workspace)["stats"]
    assert stats.get("emails/hunter/resent/rate_limited", 0) >= 1
    assert stats["emails/hunter/resent/not_ready"] == 1
    assert all("hunter" in _evidence(stored[d]) for d in good)


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_a_retired_clearbit_is_reported_once_and_skipped(workspace, status):
    with FakeClearbit(keys=["ck"], retired=status).serve() as fake:
        env = {
            "CLEARBIT_API_KEY": "ck",
            "CLEARBIT_COMPANY_URL": fake.company_url,
            "CLEARBIT_PERSON_URL": fake.person_url,
        }
        domains = [f"company{i}.example" for i in range(25)]
        # it degrades cleanly: one dead letter in 26 outcomes stays under the monitors' 5 %, exit status 0
        workspace.crawl("emails", "domains=" + ",".join(domains), **env)
        # only those sent before the first answer's callback ran: the downloader's 4 slots, and as many again
        # at most while answers waited for the spider (5 seen here); not the 25 asked for
        assert fake.requests["company"] <= 8
    assert dead_letters(workspace) == [f"clearbit_retired: http_{status}"]
    assert len(records(workspace)) == 25
    assert last_run(workspace)["stats"]["emails/clearbit/retired"] == f"http_{status}"


@pytest.mark.parametrize("schema", ["v2", "old"])
def test_clearbit_names_the_people_behind_published_addresses(workspace, schema):
    companies = {
        "initrode.example": {
            "name": "Initrode",
            "addresses": ["ann.lee@initrode.example", "bo.chen@initrode.example", "sales@initrode.example"],
        }
    }
    people = {
        "ann.lee@initrode.example": {"given": "Ann", "family": "Lee"},
        "bo.chen@initrode.example": {"given": "Bo", "family": "Chen"},
    }
    with FakeClearbit(keys=["ck"], companies=companies, people=people, schema=schema).serve() as fake:
        env = {
            "CLEARBIT_API_KEY": "ck",
            "CLEARBIT_COMPANY_URL": fake.company_url,
            "CLEARBIT_PERSON_URL": fake.person_url,
        }
        workspace.crawl("emails", "domains=initrode.example,unknown.example", **env)
        assert set(fake.keys_seen) == {"ck"}
    stored = records(workspace)
    assert stored["initrode.example"]["organization"] == "Initrode"
    if schema == "v2":  # the old schema lists no addresses: nobody to ask about
        assert fake.requests["person"] == 2  # the role account is not asked about
        assert stored["initrode.example"]["pattern"] == "{first}.{last}"
        assert _evidence(stored["initrode.example"])["clearbit"]["count"] == 2
    else:
        assert fake.requests["person"] == 0 and stored["initrode.example"]["pattern"] is None
    assert stored["unknown.example"]["evidence"] == []  # Clearbit's own not-found: no dead letter
    assert dead_letters(workspace) == []


def test_a_key_without_its_endpoint_is_a_clear_error(workspace):
    result = workspace.crawl("emails", "domains=c.example", check=False, HUNTER_API_KEY=KEY)
    assert result.returncode != 0 and "set HUNTER_API_URL too" in result.stderr
    assert KEY not in result.stderr + result.stdout
    result = workspace.crawl("emails", check=False)
    assert result.returncode != 0 and "give -a domains=" in result.stderr


def test_webmail_and_disposable_domains_are_flagged_without_a_look_up(workspace):
    with FakeHunter(keys=[KEY], domains=2).serve() as fake:
        workspace.crawl(
            "emails", "domains=gmail.com,mailinator.com,users.noreply.git.example,nodot", **hunter_env(fake)
        )
        assert fake.requests["domain-search"] == 0
    stored = records(workspace)
    assert set(stored) == {"gmail.com", "mailinator.com"}
    assert stored["gmail.com"]["webmail"] is True and stored["gmail.com"]["pattern"] is None
    assert stored["mailinator.com"]["disposable"] is True
    stats = last_run(workspace)["stats"]
    assert stats["emails/skipped_domains/noreply"] == 1 and stats["emails/skipped_domains/invalid"] == 1


def test_shards_split_the_domains(workspace):
    domains = [f"company{i}.example" for i in range(12)]
    asked = []
    for shard in ("0/2", "1/2"):
        workspace.crawl("emails", "domains=" + ",".join(domains), f"shard={shard}")
        asked.append(last_run(workspace)["stats"]["emails/domains_asked"])
    assert set(records(workspace)) == set(domains) and sum(asked) == 12 and 0 < asked[0] < 12
