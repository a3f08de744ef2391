"""The Hunter and Clearbit fakes answer like the real APIs (shapes, paging, errors, limits)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

from tests.fakes.clearbit import FakeClearbit
from tests.fakes.hunter import FakeHunter


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"html": body.decode()}


def search(fake: FakeHunter, key: str = "k", **query: object) -> tuple[int, dict]:
    return get(fake.url + "v2/domain-search?" + urlencode(query), {"X-API-KEY": key})


def test_domain_search_pages_and_states_the_pattern():
    with FakeHunter(keys=["k"], domains=10).serve() as fake:
        domain = max(fake.cases, key=lambda d: len(fake.people(d)))
        total = len(fake.people(domain))
        seen = []
        for offset in range(0, total, 4):
            status, doc = search(fake, domain=domain, limit=4, offset=offset)
            assert status == 200 and doc["meta"] == {**doc["meta"], "results": total, "limit": 4, "offset": offset}
            seen += [e["value"] for e in doc["data"]["emails"]]
            assert doc["data"]["pattern"] == fake.cases[domain].pattern
            assert {"verification", "confidence", "first_name", "sources"} <= set(doc["data"]["emails"][0])
        assert len(seen) == len(set(seen)) == total
        status, doc = search(fake, domain="nobody.example")
        assert status == 200 and doc["data"]["emails"] == [] and doc["data"]["pattern"] is None
        # the query-string key works too, like the real API
        assert get(fake.url + "v2/domain-search?" + urlencode({"domain": domain, "api_key": "k"}))[0] == 200


def test_errors_limits_and_credits():
    with FakeHunter(keys=["k"], domains=2, credits=2, per_second=100, bad_domains=["no.example"]).serve() as fake:
        domain = next(iter(fake.cases))
        assert search(fake, key="wrong", domain=domain)[0] == 401
        assert search(fake, domain="not a domain")[1]["errors"][0]["id"] == "invalid_domain"
        assert search(fake, domain="no.example")[0] == 422
        fake.pending[domain] = 1
        assert search(fake, domain=domain)[0] == 202
        assert search(fake, domain=domain)[0] == 200
        assert search(fake, domain=domain)[0] == 200
        status, doc = search(fake, domain=domain)
        assert status == 429 and doc["errors"][0]["id"] == "usage_exceeded"
    with FakeHunter(keys=["k"], domains=2, per_second=2).serve() as fake:
        statuses = [search(fake, domain=next(iter(fake.cases)))[0] for _ in range(4)]
        assert statuses[:2] == [200, 200] and 403 in statuses[2:]


def test_clearbit_lookups_alive_and_retired():
    companies = {"c.example": {"name": "C", "addresses": ["ann@c.example"], "webmail": False}}
    people = {"ann@c.example": {"given": "Ann", "family": "Lee"}}
    with FakeClearbit(keys=["ck"], companies=companies, people=people).serve() as fake:
        auth = {"Authorization": "Bearer ck"}
        status, doc = get(fake.company_url + "?domain=c.example", auth)
        assert status == 200 and doc["site"]["emailAddresses"] == ["ann@c.example"] and doc["emailProvider"] is False
        status, doc = get(fake.person_url + "?email=ann@c.example", auth)
        assert status == 200 and doc["name"]["fullName"] == "Ann Lee"
        assert get(fake.company_url + "?domain=x.example", auth) == (
            404,
            {"error": {"type": "unknown_record", "message": "Unknown domain"}},
        )
        assert get(fake.company_url + "?domain=c.example", {"Authorization": "Bearer no"})[0] == 401
    with FakeClearbit(keys=["ck"], companies=companies, schema="old").serve() as fake:
        doc = get(fake.company_url + "?domain=c.example", {"Authorization": "Bearer ck"})[1]
        assert doc["personal"] is False and "site" not in doc
    with FakeClearbit(retired=410).serve() as fake:
        status, doc = get(fake.company_url + "?domain=c.example")
        assert status == 410 and "retired" in doc["html"]


def test_the_fake_answers_in_the_recorded_shape():
    from pathlib import Path

    import pytest

    sample = Path(__file__).resolve().parents[3] / "shared" / "samples" / "hunter"
    sample = sample / "hunterio_chatgpt-mcp_domain-search-fresh.json"
    if not sample.exists():
        pytest.skip("../shared/samples is not here")
    real = json.loads(sample.read_text())
    with FakeHunter(keys=["k"], domains=3).serve() as fake:
        domain = max(fake.cases, key=lambda d: len(fake.people(d)))
        _, doc = search(fake, domain=domain)
    assert set(doc) == set(real) - {"_comment"}
    assert set(doc["data"]) == set(real["data"]) and set(doc["meta"]) == set(real["meta"])
    real_email, fake_email = real["data"]["emails"][0], doc["data"]["emails"][0]
    assert set(fake_email) == set(real_email)
    assert set(fake_email["verification"]) == set(real_email["verification"])
    assert set(fake_email["sources"][0]) == set(real_email["sources"][0])
