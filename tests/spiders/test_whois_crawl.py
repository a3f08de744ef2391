"""Real ``scrapy crawl whois`` runs against the loopback RDAP and port-43 fakes (tests/fakes/whois.py),
on the default settings (IANA's names) with the maps sending every hop of a referral chain here."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.whois import IANA_WHOIS, FakeWhoisServices

#: the client's per-server rate; the fakes allow the same (and count any request above it)
RATE = 20


@pytest.fixture
def fake_whois() -> Iterator[FakeWhoisServices]:
    # a token of leeway: on a loaded machine requests sent 50 ms apart may arrive closer together
    with FakeWhoisServices(rate=RATE, burst=2, leeway=1.0, slow_seconds=4).serve() as fake:
        yield fake


def crawl(workspace, fake: FakeWhoisServices, *arguments: str, check: bool = True, **settings: Any):
    return workspace.crawl(
        "whois",
        *arguments,
        settings={**fake.settings(), "WHOIS_RATE": RATE, "WHOIS_BURST": 2, "WHOIS_THROTTLE_BACKOFF": 1, **settings},
        check=check,
    )


def records(workspace) -> dict[str, dict[str, Any]]:
    rows = workspace.query("SELECT * EXCLUDE (raw), length(raw) AS raw_length FROM whois_domain")
    return {row["domain"]: row for row in rows}


def requests_for(fake: FakeWhoisServices, domain: str) -> int:
    """Requests a domain cost: its own queries, plus IANA's referral for its TLD (paid once per TLD)."""
    own = sum(1 for _, query, _ in fake.log if query.split()[-1].removesuffix("/e").lower() == domain)
    tld = domain.rsplit(".", 1)[-1]
    return own + sum(1 for server, query, _ in fake.log if server == IANA_WHOIS and query == tld)


RDAP_DOMAINS = ["alpha.com", "beta.net", "gamma.org"]
PORT43_DOMAINS = ["delta.de", "eps.uk", "zeta.co.jp", "eta.cc", "theta.tv"]


def test_a_crawl_stores_one_record_per_domain_by_rdap_or_port_43(workspace, fake_whois):
    # a URL or an address names its registrable domain
    crawl(workspace, fake_whois, "domains=https://www.Alpha.com/about,hostmaster@beta.net,gamma.org")
    crawl(workspace, fake_whois, "domains=" + ",".join(PORT43_DOMAINS))
    stored = records(workspace)
    assert set(stored) == set(RDAP_DOMAINS + PORT43_DOMAINS)

    alpha = stored["alpha.com"]
    assert alpha["protocol"] == "rdap" and alpha["tld"] == "com"
    assert alpha["source_server"] == "rdap.registry-a.example"
    registrar = fake_whois.registrar_of("alpha.com")
    assert alpha["registrar_server"] == f"rdap.registrar-{registrar + 1}.example"
    assert alpha["registrar"] == f"Registrar {registrar + 1} LLC"
    assert alpha["registrar_iana_id"] == str(1000 + registrar)
    assert alpha["registrar_abuse_email"] == f"abuse@registrar-{registrar + 1}.example"
    assert alpha["status"] == ["clientTransferProhibited", "serverDeleteProhibited"]
    assert alpha["expires"].startswith("203")  # the registry's date wins over the registrar's 2099
    # the registrar's thick answer fills what the registry leaves out; RFC 9537 markers are listed
    assert alpha["registrant_organization"].startswith("Example Holdings ")
    assert alpha["registrant_country"] == "DE"
    assert alpha["redacted"] == ["Registrant Email", "Registrant Name"]
    assert len(alpha["name_servers"]) == 2 and alpha["name_servers"][0].startswith("ns1.hosting-")
    assert alpha["raw_length"] > 500

    eta = stored["eta.cc"]  # thin registry -> the registrar it refers to
    assert eta["protocol"] == "whois" and eta["source_server"] == "ccwhois.registry-a.example"
    assert eta["registrar_server"] == fake_whois.whois_registrar_of("eta.cc")
    assert eta["registrant_organization"].startswith("Example Holdings ") and eta["registrant_country"] == "DE"
    assert "Registrant Name" in eta["redacted"] and eta["dnssec"] is False
    assert eta["expires"].startswith("203")
    assert stored["delta.de"]["status"] == ["connect"] and stored["delta.de"]["source_server"] == "whois.denic.de"
    assert stored["eps.uk"]["registrar"] == "Example Registrar Ltd t/a Example"
    assert stored["zeta.co.jp"]["expires"].startswith("2031-03-31") and stored["zeta.co.jp"]["tld"] == "jp"

    # requests per domain: <= 2 with RDAP (registry, registrar), <= 3 on port 43 (IANA, TLD, registrar)
    for domain in RDAP_DOMAINS:
        assert requests_for(fake_whois, domain) == 2, domain
    for domain in PORT43_DOMAINS:
        assert requests_for(fake_whois, domain) <= 3, domain
    assert requests_for(fake_whois, "eta.cc") == 3
    assert sum(fake_whois.over_limit.values()) == 0, fake_whois.over_limit
    # DENIC and JPRS are asked in their own query forms
    assert ("whois.denic.de", "-T dn,ace delta.de") in {(s, q) for s, q, _ in fake_whois.log}
    assert ("whois.jprs.jp", "zeta.co.jp/e") in {(s, q) for s, q, _ in fake_whois.log}


def test_a_rerun_within_the_ttl_fetches_nothing(workspace, fake_whois):
    domains = "domains=alpha.com,delta.de,eta.cc"
    crawl(workspace, fake_whois, domains)
    assert fake_whois.bootstrap_fetches == 1
    asked = len(fake_whois.log)
    result = crawl(workspace, fake_whois, domains)
    assert len(fake_whois.log) == asked, "a rerun within WHOIS_TTL sent requests"
    assert fake_whois.bootstrap_fetches == 1  # the stored bootstrap is younger than a day
    assert "3 of 3 names stored within" in result.stderr

    # past the TTL (here: a TTL of 0) the domains are fetched again; an old bootstrap is revalidated
    crawl(workspace, fake_whois, domains, WHOIS_TTL=0, WHOIS_BOOTSTRAP_MAX_AGE=0)
    assert len(fake_whois.log) > asked
    assert fake_whois.bootstrap_fetches == 2 and fake_whois.bootstrap_not_modified == 1
    # force=true fetches what is fresh too
    asked = len(fake_whois.log)
    crawl(workspace, fake_whois, "domains=alpha.com", "force=true")
    assert len(fake_whois.log) == asked + 2


def test_a_throttled_server_slows_only_its_own_domains(workspace, tmp_path):
    # whois.nic.uk answers its first two queries "Try again after: 4s"
    fake = FakeWhoisServices(
        rate=RATE,
        burst=2,
        leeway=1.0,
        throttle_first={"whois.nic.uk": 2},
        throttle_text="%% Maximum query rate reached. Try again after: 4s\r\n",
    )
    uk = [f"uk{i}.uk" for i in range(3)]
    others = [f"de{i}.de" for i in range(6)] + [f"com{i}.com" for i in range(4)]
    with fake.serve():
        result = crawl(workspace, fake, "domains=" + ",".join(uk + others), MONITOR_MAX_ERROR_RATE=1)
        stored = records(workspace)
        assert set(stored) == set(uk + others)  # the throttled ones too, once the server let them
        assert "whois.nic.uk answered throttle text: it rests 4 s" in result.stderr
        uk_times = sorted(when for query, when in fake.queries("whois.nic.uk"))
        first_throttle, after_rest = uk_times[0], uk_times[2]  # the first two were throttled
        other_done = max(when for server, query, when in fake.log if server not in ("whois.nic.uk", IANA_WHOIS))
        assert after_rest - first_throttle >= 3.9  # its domains waited the rest it asked for
        assert other_done < after_rest, "the other servers' domains waited for the throttled one"
        assert sum(fake.over_limit.values()) == 0
    for domain in uk:
        assert stored[domain]["status"] == ["Registered until expiry date."]
    assert workspace.meta().failed("whois") == []


def test_an_rdap_429_is_retried_after_its_retry_after(workspace, fake_whois):
    crawl(workspace, fake_whois, "domains=limited-1.com")
    (first, second, *_) = [when for server, query, when in fake_whois.log if query == "limited-1.com"]
    assert second - first >= 0.9
    assert records(workspace)["limited-1.com"]["protocol"] == "rdap"


HOSTILE = [
    "garbage-1.com",
    "html-1.com",
    "empty-1.com",
    "truncated-1.com",
    "nonutf8-1.com",
    "missing-1.com",
    "garbage-2.de",
    "html-2.de",
    "empty-2.de",
    "truncated-2.de",
    "nonutf8-2.de",
    "missing-2.de",
    "slow-1.de",
    "nowhere.fr",
    "nowhere.zz",
]


def test_bad_answers_are_dead_letters_and_never_crash_the_crawl(workspace, fake_whois):
    good = ["alpha.com", "latin1-1.de", "badregistrar-1.com", "badregistrar-2.cc", "loop-1.com", "loop-2.cc"]
    crawl(
        workspace,
        fake_whois,
        "domains=" + ",".join(HOSTILE + good),
        DOWNLOAD_TIMEOUT=1,
        RETRY_TIMES=1,
        MONITOR_MAX_ERROR_RATE=1,
    )
    stored = records(workspace)
    assert set(stored) == set(good)
    assert not any(row["deleted"] for row in stored.values())
    # a registrar that fails leaves the registry's record, without the registrar's fields
    assert stored["badregistrar-1.com"]["registrar_server"] is None
    assert stored["badregistrar-1.com"]["registrar"].startswith("Registrar ")
    assert stored["badregistrar-2.cc"]["registrant_organization"] is None
    # a registry that links or refers to itself is not asked twice
    assert stored["loop-1.com"]["registrar_server"] is None and stored["loop-2.cc"]["registrar_server"] is None
    assert requests_for(fake_whois, "loop-1.com") == 1
    assert stored["latin1-1.de"]["status"] == ["connect"]

    reasons: dict[str, list[str]] = {}
    for row in workspace.meta().failed("whois"):
        about = f"{row['url']} {row['payload_sample']}".lower()
        reasons.setdefault(about, []).append(row["reason"].split(":")[0])
    by_domain = {
        domain: sorted(r for url, rs in reasons.items() for r in rs if domain in url)
        for domain in [*HOSTILE, "badregistrar-1.com", "badregistrar-2.cc"]
    }
    assert by_domain["garbage-1.com"] == ["invalid_json"]
    assert by_domain["html-1.com"] == ["invalid_json"]
    assert by_domain["empty-1.com"] == ["invalid_json"]
    assert by_domain["truncated-1.com"] == ["invalid_json"]
    assert by_domain["nonutf8-1.com"] == ["invalid_json"]
    assert by_domain["missing-1.com"] == ["not_found"]
    assert by_domain["garbage-2.de"] == ["binary_answer"]
    assert by_domain["html-2.de"] == ["html_answer"]
    assert by_domain["empty-2.de"] == ["empty_answer"]
    assert by_domain["truncated-2.de"] == ["truncated_answer"]
    assert by_domain["nonutf8-2.de"] == ["not_text"]
    assert by_domain["missing-2.de"] == ["not_found"]
    assert by_domain["slow-1.de"] == ["download_error"]
    assert by_domain["nowhere.fr"] == ["no_whois_server"]  # IANA refers .fr nowhere (in the fake)
    assert by_domain["nowhere.zz"] == ["invalid_domain"]  # no such public suffix
    assert by_domain["badregistrar-1.com"] == ["http_500"]
    assert by_domain["badregistrar-2.cc"] == ["binary_answer"]


def test_a_domain_no_longer_registered_becomes_a_tombstone(workspace, fake_whois):
    crawl(workspace, fake_whois, "domains=alpha.com,delta.de")
    fake_whois.unregistered |= {"alpha.com", "delta.de"}
    crawl(workspace, fake_whois, "domains=alpha.com,delta.de,missing-9.com", "force=true", MONITOR_MAX_ERROR_RATE=1)
    stored = records(workspace)
    # stored before, now unknown to the registry: tombstones
    assert stored["alpha.com"]["deleted"] is True and stored["alpha.com"]["registrar"] is None
    assert stored["delta.de"]["deleted"] is True
    # never stored: a dead letter, no tombstone
    assert "missing-9.com" not in stored
    assert [row["reason"] for row in workspace.meta().failed("whois")] == ["not_found"]


def test_domains_from_stored_records(workspace, fake_whois):
    crawl(workspace, fake_whois, "domains=alpha.com,delta.de")
    asked = len(fake_whois.log)
    crawl(workspace, fake_whois, "from=whois", "force=true")
    again = [query for _, query, _ in fake_whois.log[asked:]]
    assert "alpha.com" in again and "-T dn,ace delta.de" in again


def test_bad_settings_and_arguments_are_clear_errors(workspace, fake_whois):
    result = crawl(workspace, fake_whois, "domains=a.com", check=False, WHOIS_SERVER_MAP="{not json")
    assert result.returncode != 0 and "WHOIS_SERVER_MAP: expected a JSON object" in result.stderr
    result = crawl(workspace, fake_whois, check=False)
    assert result.returncode != 0 and "give -a domains=" in result.stderr


def test_an_unreachable_iana_server_is_a_dead_letter_per_domain(workspace, fake_whois):
    settings = fake_whois.settings()
    servers = {**json.loads(settings["WHOIS_SERVER_MAP"]), IANA_WHOIS: "127.0.0.1:9"}
    crawl(
        workspace,
        fake_whois,
        "domains=alpha.com,delta.de,other.de",
        WHOIS_SERVER_MAP=json.dumps(servers),
        RETRY_TIMES=0,
        MONITOR_MAX_ERROR_RATE=1,
    )
    assert set(records(workspace)) == {"alpha.com"}  # RDAP does not need IANA's WHOIS server
    # asked again for the second .de domain: a failure is not remembered as "no server"
    reasons = sorted(row["reason"] for row in workspace.meta().failed("whois"))
    assert reasons == ["iana_unavailable: no answer for .de"] * 2


def test_a_server_asking_for_a_day_off_gets_it_and_its_domains_become_dead_letters(workspace):
    fake = FakeWhoisServices(
        rate=RATE,
        leeway=1.0,
        throttle_first={"whois.nic.uk": 1},
        throttle_text="Rate limit exceeded. Try again after: 24h\r\n",
    )
    uk = [f"uk{i}.uk" for i in range(4)]
    with fake.serve():
        started = time.monotonic()
        crawl(workspace, fake, "domains=" + ",".join([*uk, "de0.de", "de1.de"]), MONITOR_MAX_ERROR_RATE=1)
        assert time.monotonic() - started < 60  # nobody waited a day
        asked = sorted(fake.queries("whois.nic.uk"), key=lambda item: item[1])
    # the server was not asked again once it said so (a second query may have been on its way already)
    assert len(asked) <= 2
    answered = {query for query, _ in asked[1:]}
    assert set(records(workspace)) == {"de0.de", "de1.de"} | answered
    reasons = sorted(row["reason"].split(":")[0] for row in workspace.meta().failed("whois"))
    assert reasons == ["download_error"] * (len(uk) - len(asked)) + ["http_429"]
    failures = [row["reason"] for row in workspace.meta().failed("whois")]
    assert all("ServerResting" in reason and "rests for" in reason for reason in failures if "download" in reason)
