"""The WHOIS source's parsers: every recorded sample read to the values a person reads off it, and the
pieces (bootstrap, redaction, merge, dates, throttle texts, hostile bodies, the token bucket)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.spiders.whois.domain import DomainData, epp_status, parse_date
from crawler.spiders.whois.politeness import TokenBucket
from crawler.spiders.whois.rdap import Bootstrap, BootstrapError, parse_domain, registrar_link
from crawler.spiders.whois.text import (
    UnreadableAnswer,
    decode,
    domain_records,
    is_not_found,
    parse_text,
    referral,
    throttle_wait,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/samples is not here")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


GOOGLE_STATUS = [
    "clientUpdateProhibited",
    "clientTransferProhibited",
    "clientDeleteProhibited",
    "serverUpdateProhibited",
    "serverTransferProhibited",
    "serverDeleteProhibited",
]
GOOGLE_NS = ["ns1.google.com", "ns2.google.com", "ns3.google.com", "ns4.google.com"]

#: sample -> (domain queried, what a person reads off it)
WHOIS_SAMPLES = {
    "likexian_com_google.com.txt": (
        "google.com",
        {
            "registrar": "MarkMonitor, Inc.",
            "registrar_iana_id": "292",
            "registrar_abuse_email": "abusecomplaints@markmonitor.com",
            "registrar_whois_server": "whois.markmonitor.com",
            # -0700 in the answer
            "created": utc(1997, 9, 15, 7),
            "updated": utc(2019, 9, 9, 15, 39, 4),
            "expires": utc(2028, 9, 13, 7),
            "status": GOOGLE_STATUS,
            "name_servers": ["ns2.google.com", "ns3.google.com", "ns4.google.com", "ns1.google.com"],
            "dnssec": False,
            "registrant_organization": "Google LLC",
            "registrant_country": "US",
            "redacted": [],
        },
    ),
    "likexian_de_google.de.txt": (
        "google.de",
        {
            "registrar": None,
            "created": None,
            "updated": utc(2018, 3, 12, 20, 44, 25),  # Changed: …+01:00
            "expires": None,
            "status": ["connect"],
            "name_servers": GOOGLE_NS,
            "dnssec": None,
        },
    ),
    "likexian_jp_google.co.jp.txt": (
        "google.co.jp",
        {
            "registrar": None,
            "created": utc(2001, 3, 22),
            "updated": utc(2023, 3, 31, 16, 5, 57),  # 2023/04/01 01:05:57 (JST)
            "expires": utc(2024, 3, 31),  # [State] Connected (2024/03/31)
            "status": ["Connected", "AgentChangeLocked"],
            "name_servers": GOOGLE_NS,
            "registrant_organization": "Google Japan G.K.",
        },
    ),
    "likexian_net_he.net.txt": (
        "he.net",
        {
            "registrar": "Network Solutions, LLC",
            "registrar_iana_id": "2",
            "registrar_abuse_email": "abuse@web.com",
            "registrar_whois_server": "whois.networksolutions.com",
            "created": utc(1995, 7, 31, 4),
            "updated": utc(2019, 7, 30, 19, 17, 40),
            "expires": utc(2029, 7, 30, 4),
            "status": ["clientTransferProhibited"],
            "name_servers": ["ns1.he.net", "ns2.he.net", "ns3.he.net", "ns4.he.net", "ns5.he.net"],
            "dnssec": False,
            "registrant_organization": "Hurricane Electric Hostmaster",
            "registrant_country": "US",
        },
    ),
    "likexian_org_github.org.txt": (
        "github.org",
        {
            "registrar": "ENOM, INC.",
            "registrar_iana_id": "48",
            "registrar_abuse_email": "ABUSE@ENOM.COM",
            "registrar_whois_server": "whois.enom.com",
            "created": utc(2008, 2, 9, 2, 7),
            "updated": utc(2019, 1, 11, 8, 26, 28),
            "expires": utc(2020, 2, 9, 2, 7),
            "status": ["clientTransferProhibited"],
            "name_servers": ["ns1.dnsimple.com", "ns2.dnsimple.com", "ns3.dnsimple.com", "ns4.dnsimple.com"],
            "dnssec": False,
            # "REDACTED FOR PRIVACY" is marked redacted, never stored as the organization
            "registrant_organization": None,
            "registrant_country": "US",
        },
    ),
    "likexian_uk_google.uk.txt": (
        "google.uk",
        {
            "registrar": "Markmonitor Inc. t/a MarkMonitor Inc.",
            "registrar_url": "http://www.markmonitor.com",
            "created": utc(2014, 6, 11),  # Registered on: 11-Jun-2014
            "updated": utc(2019, 5, 10),
            "expires": utc(2020, 6, 11),
            "status": ["Registered until expiry date."],
            "name_servers": [
                "ns1.googledomains.com",
                "ns2.googledomains.com",
                "ns3.googledomains.com",
                "ns4.googledomains.com",
            ],
        },
    ),
    "penman_urlowl.com.verisign-thin.txt": (
        "urlowl.com",
        {
            "registrar": "DYNADOT, LLC",
            "registrar_iana_id": "472",
            "registrar_abuse_email": "abuse@dynadot.com",
            "registrar_whois_server": "whois.dynadot.com",
            "created": utc(2013, 2, 21, 19, 24, 57),
            "updated": utc(2017, 3, 31, 7, 36, 34),
            "expires": utc(2018, 2, 21, 19, 24, 57),  # Registry Expiry Date
            "status": ["clientTransferProhibited"],
            "name_servers": ["ns1.sedoparking.com", "ns2.sedoparking.com"],
            "dnssec": False,
        },
    ),
}

RDAP_SAMPLES = {
    "DERIVED_verisign_rdap_google.com.json": {
        "domain": "google.com",
        "registrar": "MarkMonitor Inc.",
        "registrar_iana_id": "292",
        "registrar_abuse_email": "abusecomplaints@markmonitor.com",
        "registrar_abuse_phone": "+1.2086851750",
        "registrar_rdap_url": "https://rdap.markmonitor.com/rdap/domain/GOOGLE.COM",
        "created": utc(1997, 9, 15, 4),
        "updated": utc(2019, 9, 9, 15, 39, 4),
        "expires": utc(2028, 9, 14, 4),
        "status": sorted(GOOGLE_STATUS, key=lambda s: ("server" in s, s)),
        "name_servers": GOOGLE_NS,
        "dnssec": False,
        "registrant_organization": None,
    },
    "DERIVED_markmonitor_rdap_google.com.json": {
        "domain": "google.com",
        "registrar": "MarkMonitor Inc.",
        "registrar_iana_id": "292",
        "registrar_abuse_email": "abusecomplaints@markmonitor.com",
        "registrar_rdap_url": None,  # only a self link: nothing further to follow
        "registrar_whois_server": "whois.markmonitor.com",
        "created": utc(1997, 9, 15, 7),
        "updated": utc(2019, 9, 9, 15, 39, 4),
        "expires": utc(2028, 9, 13, 7),
        "status": GOOGLE_STATUS,
        "name_servers": GOOGLE_NS,
        "dnssec": False,
        "registrant_organization": "Google LLC",
        "registrant_country": "US",
        "redacted": ["Registrant Contact"],  # its "REDACTED FOR PRIVACY" remark
    },
    "whoisit_domain1_google.com.verisign.json": {
        "domain": "google.com",
        "registrar": "MarkMonitor Inc.",
        "registrar_iana_id": "292",
        "registrar_abuse_phone": "+1.2083895740",
        "created": utc(1997, 9, 15, 4),
        "updated": None,  # this 2021 answer has no "last changed" event
        "expires": utc(2028, 9, 14, 4),
        "status": sorted(GOOGLE_STATUS, key=lambda s: ("server" in s, s)),
        "name_servers": GOOGLE_NS,
        "dnssec": True,
    },
}


def test_every_sample_has_its_expected_values():
    if SAMPLES.is_dir():
        assert {p.name for p in (SAMPLES / "whois").iterdir()} == set(WHOIS_SAMPLES)
        rdap = {p.name for p in (SAMPLES / "rdap").iterdir()}
        assert rdap == set(RDAP_SAMPLES) | {"DERIVED_iana_rdap_bootstrap_dns.json"}


@needs_samples
@pytest.mark.parametrize("sample", sorted(WHOIS_SAMPLES))
def test_port43_samples_read_as_a_person_reads_them(sample):
    domain, expected = WHOIS_SAMPLES[sample]
    text = decode((SAMPLES / "whois" / sample).read_bytes())  # as received: one has no final line break
    # terms of use that mention query rates ("exceeding query rate or volume limits") are no throttle notice
    assert throttle_wait(text) is None and not is_not_found(text)
    data = parse_text(domain, text)
    assert data.domain == domain
    for name, value in expected.items():
        assert getattr(data, name) == value, f"{sample}: {name}"


@needs_samples
def test_a_redacted_text_answer_lists_the_withheld_fields():
    data = parse_text("github.org", (SAMPLES / "whois" / "likexian_org_github.org.txt").read_text())
    assert {"Registrant Organization", "Registrant Name", "Admin Email", "Tech Phone"} <= set(data.redacted)
    assert "Registrant Country" not in data.redacted and "Registrant State/Province" not in data.redacted
    assert "REDACTED" not in json.dumps(data.to_dict(), default=str).replace("redacted", "")


@needs_samples
@pytest.mark.parametrize("sample", sorted(RDAP_SAMPLES))
def test_rdap_samples_read_as_a_person_reads_them(sample):
    data = parse_domain(json.loads((SAMPLES / "rdap" / sample).read_text()))
    for name, value in RDAP_SAMPLES[sample].items():
        assert getattr(data, name) == value, f"{sample}: {name}"


@needs_samples
def test_the_registry_and_registrar_samples_merge_registry_first():
    registry = parse_domain(json.loads((SAMPLES / "rdap" / "DERIVED_verisign_rdap_google.com.json").read_text()))
    registrar = parse_domain(json.loads((SAMPLES / "rdap" / "DERIVED_markmonitor_rdap_google.com.json").read_text()))
    merged = registry.filled_from(registrar)
    assert merged.expires == utc(2028, 9, 14, 4)  # the registry's date wins
    assert merged.registrant_organization == "Google LLC"  # the registrar fills what the registry leaves out
    assert merged.registrant_country == "US"
    assert merged.redacted == ["Registrant Contact"]


@needs_samples
def test_the_bootstrap_sample_matches_the_longest_labels_and_prefers_https():
    bootstrap = Bootstrap(json.loads((SAMPLES / "rdap" / "DERIVED_iana_rdap_bootstrap_dns.json").read_text()))
    assert bootstrap.base_urls("google.com") == ["https://rdap.verisign.com/com/v1/"]
    assert bootstrap.base_urls("www.shop.samsung") == ["https://nic.samsung:8443/rdap/"]
    assert bootstrap.base_urls("google.de") == []  # no RDAP in this (2024) file: port 43


def test_bootstrap_prefers_https_and_the_longest_suffix():
    bootstrap = Bootstrap(
        {
            "services": [
                [["jp"], ["http://rdap.jp.example/", "https://rdap.jp.example/"]],
                [["co.jp"], ["https://rdap.cojp.example"]],
            ]
        }
    )
    assert bootstrap.base_urls("a.b.co.jp") == ["https://rdap.cojp.example/"]
    assert bootstrap.base_urls("x.jp") == ["https://rdap.jp.example/", "http://rdap.jp.example/"]
    assert bootstrap.base_urls("x.de") == []
    for bad in (None, [], {"services": "x"}, {"services": []}):
        with pytest.raises(BootstrapError):
            Bootstrap(bad)


def _rdap(**extra):
    return {"objectClassName": "domain", "ldhName": "EXAMPLE.COM", **extra}


def test_rfc9537_markers_withhold_fields_whatever_the_placeholder():
    doc = _rdap(
        entities=[
            {
                "roles": ["registrant"],
                "vcardArray": [
                    "vcard",
                    [
                        ["version", {}, "text", "4.0"],
                        ["org", {}, "text", "Data Redacted"],
                        ["adr", {"cc": "FR"}, "text", ["", "", "", "", "", "", ""]],
                    ],
                ],
            }
        ],
        redacted=[
            {"name": {"type": "Registrant Organization"}, "method": "replacementValue"},
            {"name": {"description": "Registrant Phone"}, "method": "removal"},
        ],
    )
    data = parse_domain(doc)
    assert data.registrant_organization is None
    assert data.registrant_country == "FR"  # from the adr's cc parameter (RFC 8605)
    assert data.redacted == ["Registrant Organization", "Registrant Phone"]


def test_registrar_link_needs_an_rdap_media_type_and_is_not_the_answer_itself():
    own = "https://rdap.registry.example/domain/example.com"
    assert registrar_link(_rdap(links=[{"rel": "related", "href": own + "x", "type": "text/html"}])) is None
    assert registrar_link(_rdap(links=[{"rel": "self", "href": own}, {"rel": "related", "href": own}])) is None
    link = {"rel": "registration", "href": "https://rdap.r.example/d/x", "type": "application/rdap+json"}
    assert registrar_link(_rdap(links=[link])) == "https://rdap.r.example/d/x"


def test_not_a_domain_object_is_refused():
    for doc in ({"errorCode": 404}, [], {"objectClassName": "entity", "ldhName": "x.com"}):
        with pytest.raises(ValueError):
            parse_domain(doc)
    assert parse_domain({"ldhName": "EXAMPLE.COM", "status": ["active"]}).status == ["active"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-09-09T08:39:04-0700", utc(2019, 9, 9, 15, 39, 4)),
        ("2019-01-11T08:26:28.00Z", utc(2019, 1, 11, 8, 26, 28)),
        ("11-Jun-2014", utc(2014, 6, 11)),
        ("05-feb-2003", utc(2003, 2, 5)),
        ("2023/04/01 01:05:57 (JST)", utc(2023, 3, 31, 16, 5, 57)),
        ("2001/03/22", utc(2001, 3, 22)),
        ("", None),
        ("not a date", None),
    ],
)
def test_dates_of_every_format_become_utc(text, expected):
    assert parse_date(text) == expected


def test_status_codes_take_their_epp_form():
    assert epp_status("client transfer prohibited") == "clientTransferProhibited"
    assert epp_status("clientTransferProhibited https://icann.org/epp#clientTransferProhibited") == (
        "clientTransferProhibited"
    )
    assert epp_status("ok (https://www.icann.org/epp#ok)") == "ok"
    assert epp_status("Registered until expiry date.") == "Registered until expiry date."


def test_bogus_host_records_before_the_domain_record_are_skipped():
    answer = (
        "   Server Name: GOOGLE.COM.EVIL.EXAMPLE\n   Registrar: BOGUS INC.\n\n"
        "   Domain Name: GOOGLE.COM\n   Registrar: REAL REGISTRAR LLC\n   Creation Date: 1997-09-15T04:00:00Z\n"
    )
    assert len(domain_records(answer, "google.com")) == 1
    assert parse_text("google.com", answer).registrar == "REAL REGISTRAR LLC"


def test_thin_and_thick_answers_concatenated_merge_registry_first():
    thin = (
        "   Domain Name: EXAMPLE.COM\n   Registrar WHOIS Server: whois.r.example\n   Registrar: R LLC\n"
        "   Registry Expiry Date: 2030-01-01T00:00:00Z\n   Name Server: NS1.EXAMPLE.NET\n"
    )
    thick = (
        "Domain Name: example.com\nRegistrar: R LLC\nRegistrar Registration Expiration Date: 2031-01-01T00:00:00Z\n"
        "Registrant Organization: Example Org\nRegistrant Country: NL\n"
    )
    data = parse_text("example.com", thin + "\n" + thick)
    assert data.expires == utc(2030, 1, 1)
    assert data.registrant_organization == "Example Org" and data.registrant_country == "NL"
    assert data.name_servers == ["ns1.example.net"]


@pytest.mark.parametrize(
    ("text", "wait"),
    [
        ("WHOIS LIMIT EXCEEDED - SEE WWW.PIR.ORG/WHOIS FOR DETAILS\r\n", 0.0),
        ("Rate limit exceeded. Try again after: 24h\r\n", 86400.0),
        ("%% Maximum query rate reached. Try again after: 2s\n", 2.0),
        ("Your IP has been BLACKLISTED\n", 0.0),
        ("% Excessive querying, please retry after 10 minutes\n", 600.0),
        ("Domain Name: EXAMPLE.COM\nRegistrar: R\n", None),
    ],
)
def test_throttle_texts_are_recognized_with_their_wait(text, wait):
    assert throttle_wait(text) == wait


def test_terms_of_use_in_a_real_record_are_no_throttle_notice():
    record = "\n".join(f"Field {chr(65 + i)}: value" for i in range(10))
    record = "Domain Name: EXAMPLE.COM\n" + record + "\nexcessive querying is prohibited\n"
    assert throttle_wait(record) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty_answer"),
        (b"   \r\n", "empty_answer"),
        (b"<!DOCTYPE html><html><body>busy</body></html>\n", "html_answer"),
        (b"\x00\xff\x13garbage\n", "binary_answer"),
        (bytes(range(0x80, 0x100)) * 4 + b"\n", "not_text"),
        (b"Domain Name: EXAMPLE.COM\nRegistrar: Exa", "truncated_answer"),
        (b"Domain Name: EXAMPLE.COM\nRegistrar IA", "truncated_answer"),
        (b"a. [Domain Name]                EXAMPLE.JP\np. [Name Serv", "truncated_answer"),
    ],
)
def test_hostile_bodies_are_unreadable(body, reason):
    with pytest.raises(UnreadableAnswer, match=reason):
        decode(body)


def test_an_answer_ending_in_its_terms_without_a_line_break_is_whole():
    assert decode(b"Domain Name: EXAMPLE.COM\nRegistrar: R\n\nThe Registry database contains ONLY .COM domains.")


def test_latin1_answers_decode_by_the_fallback():
    text = decode("Domain: m\u00fcller.de\nStatus: connect\n".encode("latin-1"))
    assert "müller" in text


def test_not_found_and_referral_texts():
    assert is_not_found('No match for "NOPE.COM".\r\n')
    assert is_not_found("Domain: x.de\nStatus: free\n")
    assert not is_not_found("Domain Name: EXAMPLE.COM\n")
    assert referral("refer:        whois.nic.de\n\ndomain: DE\nwhois: whois.denic.de\n") == "whois.nic.de"
    assert referral("whois:        whois.jprs.jp\n") == "whois.jprs.jp"
    assert referral("% This query returned 0 objects.\n") is None
    assert referral("refer: https://rdap.example/\n") is None


def test_an_answer_without_facts_is_refused():
    with pytest.raises(ValueError):
        parse_text("example.com", "Domain Name: EXAMPLE.COM\n>>> Last update of whois database <<<\n")


def test_merge_keeps_the_registry_values_and_unions_redactions():
    registry = DomainData(domain="x.com", registrar="R", status=["ok"], redacted=["Registrant Name"])
    registrar = DomainData(domain="x.com", registrar="Other", registrant_country="DE", redacted=["Tech Email"])
    merged = registry.filled_from(registrar)
    assert merged.registrar == "R" and merged.registrant_country == "DE" and merged.status == ["ok"]
    assert merged.redacted == ["Registrant Name", "Tech Email"]
    assert DomainData.from_dict(merged.to_dict()) == merged


def test_token_bucket_grants_the_burst_then_the_rate_and_rests_when_paused():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])
    assert bucket.reserve() == 0.0 and bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.reserve() == 0.0
    bucket.pause(10)
    assert bucket.reserve() == pytest.approx(10)
    now[0] = 10.5
    assert bucket.reserve() == pytest.approx(0.5)  # the rest over, the bucket refills from empty
    now[0] = 100
    granted = sum(1 for _ in range(10) if bucket.reserve() == 0.0)
    assert granted == 2  # never more than the burst at once


def test_dead_letters_replay_as_their_domains():
    from crawler.spiders.whois.spider import WhoisSpider

    failed = [
        {"id": 1, "url": "http://127.0.0.1:8080/rdap.registry-a.example/com/v1/domain/EXAMPLE.COM"},
        {"id": 2, "url": "whois://whois.denic.de/-T%20dn,ace%20example.de"},
        {"id": 3, "url": "whois://whois.jprs.jp/example.co.jp/e"},
        {"id": 4, "url": "whois://whois.iana.org/zz"},
        {"id": 5, "url": None},
    ]
    arguments, ids = WhoisSpider.replay_arguments(failed)
    assert arguments == {"domains": "example.com,example.de,example.co.jp", "force": "true"}
    assert ids == [1, 2, 3]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, 7 * 24 * 3600.0),
        ({"WHOIS_TTL": "60"}, 60.0),
        ({"FRESHNESS_TTL_SECONDS": "0"}, 0.0),  # the core's own name on the command line wins
    ],
)
def test_whois_ttl_is_the_cores_freshness_ttl(given, expected):
    from scrapy.utils.project import get_project_settings

    from crawler.spiders.whois.spider import WhoisSpider

    settings = get_project_settings()
    settings.setdict(given, priority="cmdline")
    WhoisSpider.update_settings(settings)
    assert settings.getfloat("FRESHNESS_TTL_SECONDS") == expected


def test_a_wait_longer_than_the_limit_fails_at_once():
    import asyncio

    from crawler.spiders.whois.politeness import ServerResting

    bucket = TokenBucket(rate=10.0, burst=1)
    bucket.pause(86400)
    with pytest.raises(ServerResting, match=r"whois\.example rests for 86400 s"):
        asyncio.run(bucket.acquire(max_wait=3600, name="whois.example"))
