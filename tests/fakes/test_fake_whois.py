"""The WHOIS fakes answer like the real services: bootstrap validators, RDAP shapes, referrals, limits."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import orjson

from crawler.spiders.whois.rdap import Bootstrap, parse_domain
from crawler.spiders.whois.text import decode, parse_text, referral, throttle_wait
from tests.fakes.whois import IANA_WHOIS, FakeWhoisServices


def ask(fake: FakeWhoisServices, server: str, query: str) -> bytes:
    with socket.create_connection(("127.0.0.1", fake.whois_ports[server]), timeout=10) as conn:
        conn.sendall(query.encode() + b"\r\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_bootstrap_has_validators_and_answers_304():
    with FakeWhoisServices().serve() as fake:
        status, headers, body = get(fake.http.url("bootstrap/dns.json"))
        assert status == 200 and Bootstrap(orjson.loads(body)).base_urls("x.com")[0].startswith("https://")
        status, _, _ = get(fake.http.url("bootstrap/dns.json"), {"If-None-Match": headers["ETag"]})
        assert status == 304 and fake.bootstrap_not_modified == 1


def test_registry_links_its_registrar_and_the_registrar_marks_redactions():
    with FakeWhoisServices().serve() as fake:
        status, _, body = get(fake.http.url("rdap.registry-a.example/com/v1/domain/alpha.com"))
        registry = parse_domain(orjson.loads(body))
        assert status == 200 and registry.registrar_rdap_url.startswith("https://rdap.registrar-")
        host = registry.registrar_rdap_url.split("/")[2]
        _, _, body = get(fake.http.url(f"{host}/rdap/domain/ALPHA.COM"))
        registrar = parse_domain(orjson.loads(body))
        assert registrar.redacted == ["Registrant Email", "Registrant Name"]
        assert get(fake.http.url("rdap.registry-a.example/com/v1/domain/missing-1.com"))[0] == 404


def test_port43_referral_chain_and_formats():
    with FakeWhoisServices().serve() as fake:
        assert referral(decode(ask(fake, IANA_WHOIS, "cc"))) == "ccwhois.registry-a.example"
        thin = parse_text("eta.cc", decode(ask(fake, "ccwhois.registry-a.example", "eta.cc")))
        assert thin.registrar_whois_server == fake.whois_registrar_of("eta.cc")
        assert parse_text("x.de", decode(ask(fake, "whois.denic.de", "-T dn,ace x.de"))).status == ["connect"]
        assert parse_text("x.co.jp", decode(ask(fake, "whois.jprs.jp", "x.co.jp/e"))).expires.year == 2031


def test_each_server_counts_requests_above_its_limit():
    with FakeWhoisServices(rate=2, burst=1, leeway=0).serve() as fake:
        answers = [ask(fake, "whois.nic.uk", "a.uk") for _ in range(3)]
        assert throttle_wait(decode(answers[0])) is None
        assert throttle_wait(decode(answers[-1])) is not None and fake.over_limit["whois.nic.uk"] >= 1
        assert fake.over_limit["whois.denic.de"] == 0
        time.sleep(0.6)
        assert throttle_wait(decode(ask(fake, "whois.nic.uk", "a.uk"))) is None
        status, headers, _ = get(fake.http.url("rdap.registry-a.example/com/v1/domain/a.com"))
        status, headers, _ = get(fake.http.url("rdap.registry-a.example/com/v1/domain/a.com"))
        assert status == 429 and headers["Retry-After"] == "1"
