"""Loopback fakes of the registration-data services: RDAP (HTTP) and port-43 WHOIS (TCP), in one loop.

Built from the shapes of ``../shared/samples/rdap`` and ``../shared/samples/whois`` (written here by
hand, not copied): IANA's bootstrap ``dns.json`` (ETag, 304 on a matching ``If-None-Match``), registry
RDAP answers (Verisign's shape, a ``related`` link to the registrar), registrar RDAP answers (thick,
RFC 9537 ``redacted`` markers), and port-43 servers: IANA (``refer:``), a thin ICANN registry (with
Verisign's bogus ``Server Name:`` host records first for some names) referring to thick registrars
(``REDACTED FOR PRIVACY``), DENIC, Nominet and JPRS formats.

Every server (RDAP host or WHOIS server, by its real name) keeps its own token bucket of ``rate`` per
second and ``burst``: a request beyond it is answered as the real ones do (RDAP: 429 with Retry-After;
port 43: "WHOIS LIMIT EXCEEDED") and counted in ``over_limit`` — a polite client makes it 0. Every
request is logged in ``log`` (server, query, monotonic time).

Faults by the domain's first label: ``missing-*`` (not registered), ``limited-*`` (RDAP 429 with
Retry-After once), ``garbage-*``, ``html-*``, ``empty-*``, ``truncated-*`` (RDAP JSON cut; port 43
answer cut mid-line), ``nonutf8-*`` (binary bytes), ``latin1-*`` (a valid Latin-1 answer), ``slow-*``
(answers after ``slow_seconds``), ``badregistrar-*`` (the registrar fails with 500 / garbage),
``loop-*`` (the registry links to itself / refers to itself).

Use::

    with FakeWhoisServices(rate=20).serve() as fake:
        settings = fake.settings()   # RDAP_URL_MAP, WHOIS_SERVER_MAP: IANA's real names sent here
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread

__all__ = ["RDAP_TLDS", "WHOIS_TLDS", "FakeWhoisServices"]

#: IANA's published bootstrap location (the source's default): mapped here by ``settings()``
BOOTSTRAP_PREFIX = "https://data.iana.org/rdap/"
IANA_WHOIS = "whois.iana.org"
#: TLD -> registry RDAP base (real-looking names: the client's URL map sends them here)
RDAP_TLDS = {
    "com": "https://rdap.registry-a.example/com/v1/",
    "net": "https://rdap.registry-a.example/net/v1/",
    "org": "https://rdap.registry-b.example/rdap/",
}
RDAP_REGISTRARS = ("rdap.registrar-1.example", "rdap.registrar-2.example", "rdap.registrar-3.example")
#: TLD -> (its WHOIS server, answer format)
WHOIS_TLDS = {
    "cc": ("ccwhois.registry-a.example", "thin"),
    "tv": ("tvwhois.registry-a.example", "thin"),
    "de": ("whois.denic.de", "denic"),
    "uk": ("whois.nic.uk", "nominet"),
    "jp": ("whois.jprs.jp", "jprs"),
}
WHOIS_REGISTRARS = ("whois.registrar-1.example", "whois.registrar-2.example")
THROTTLE_TEXT = b"WHOIS LIMIT EXCEEDED - SEE TERMS OF USE\r\n"


class _Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def _label(domain: str) -> str:
    return domain.split(".", 1)[0]


@dataclass
class FakeWhoisServices:
    #: requests per second and burst each server tolerates; a request beyond is refused and counted
    rate: float = 50.0
    burst: float = 2.0
    #: leeway for the arrival jitter of a client that keeps to the same rate (tokens)
    leeway: float = 0.5
    slow_seconds: float = 5.0
    #: server -> how many first queries it answers with a "try again after" throttle text
    throttle_first: dict[str, int] = field(default_factory=dict)
    throttle_text: str = "%% Maximum query rate reached. Try again after: 2s\r\n"
    #: TLD -> its registry's RDAP base URL, and the registrars' RDAP hosts (a benchmark uses more)
    rdap_tlds: dict[str, str] = field(default_factory=lambda: dict(RDAP_TLDS))
    rdap_registrars: tuple[str, ...] = RDAP_REGISTRARS

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[str, str, float]] = []
        self.over_limit: collections.Counter[str] = collections.Counter()
        self.requests: collections.Counter[str] = collections.Counter()
        self.bootstrap_fetches = 0
        self.bootstrap_not_modified = 0
        self._buckets: dict[str, _Bucket] = {}
        self._seen_limited: set[tuple[str, str]] = set()
        #: domains the registries no longer know (answered as ``missing-*``)
        self.unregistered: set[str] = set()
        self.http: ServerHandle | None = None
        self.whois_ports: dict[str, int] = {}
        self._tcp_servers: list[asyncio.AbstractServer] = []
        self._answering: set[asyncio.Task[Any]] = set()
        self._http_handlers: list[web.Server] = []
        #: RDAP host -> its own loopback port (the same answers as under ``/<host>/`` of the main port)
        self.rdap_ports: dict[str, int] = {}

    # -- accounting ---------------------------------------------------------------------------------

    def _arrive(self, server: str, query: str) -> bool:
        """Log a request; False when it is over the server's limit (then counted)."""
        with self._lock:
            self.log.append((server, query, time.monotonic()))
            self.requests[server] += 1
            bucket = self._buckets.setdefault(server, _Bucket(self.rate, self.burst + self.leeway))
            if bucket.take():
                return True
            self.over_limit[server] += 1
            return False

    # -- RDAP ---------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/bootstrap/dns.json", self._bootstrap)
        app.router.add_get("/{server}/{path:.*}", self._rdap)
        app.on_startup.append(self._start_whois)
        app.on_cleanup.append(self._stop_whois)
        return app

    def bootstrap_document(self) -> dict[str, Any]:
        services: dict[str, list[str]] = collections.defaultdict(list)
        for tld, base in self.rdap_tlds.items():
            services[base].append(tld)
        return {
            "description": "RDAP bootstrap file for Domain Name System registrations",
            "publication": "2026-11-01T00:00:00Z",
            "version": "1.0",
            # an http mirror listed first: the client must prefer https
            "services": [[tlds, [base.replace("https://", "http://"), base]] for base, tlds in services.items()],
        }

    async def _bootstrap(self, request: web.Request) -> web.Response:
        with self._lock:
            self.bootstrap_fetches += 1
        etag = '"dns-2026-11-01"'
        if request.headers.get("If-None-Match") == etag:
            with self._lock:
                self.bootstrap_not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=orjson.dumps(self.bootstrap_document()),
            content_type="application/json",
            headers={"ETag": etag, "Last-Modified": "Sun, 01 Nov 2026 00:00:00 GMT"},
        )

    async def _rdap(self, request: web.Request) -> web.Response:
        return await self._rdap_for(request.match_info["server"], request.match_info["path"])

    async def _rdap_for(self, server: str, path: str) -> web.Response:
        domain = path.rsplit("/domain/", 1)[-1].lower() if "/domain/" in f"/{path}" else ""
        if not domain:
            return web.json_response({"errorCode": 400, "title": "bad request"}, status=400)
        if not self._arrive(server, domain):
            return web.json_response(
                {"errorCode": 429, "title": "Too Many Requests"}, status=429, headers={"Retry-After": "1"}
            )
        label = _label(domain)
        registrar = server in self.rdap_registrars
        if label.startswith("limited-") and (server, domain) not in self._seen_limited:
            self._seen_limited.add((server, domain))
            return web.json_response({"errorCode": 429}, status=429, headers={"Retry-After": "1"})
        if label.startswith("missing-") or domain in self.unregistered:
            return web.json_response({"errorCode": 404, "title": "Not Found"}, status=404)
        if label.startswith("badregistrar-") and registrar:
            return web.Response(status=500, text="Internal Server Error")
        if label.startswith("slow-"):
            await asyncio.sleep(self.slow_seconds)
        body = orjson.dumps(
            self.registrar_rdap(domain, server) if registrar else self.registry_rdap(domain, server, path)
        )
        if label.startswith("garbage-"):
            body = b"\x00\xff\xfe{{garbage" + body[:40]
        elif label.startswith("html-"):
            return web.Response(text="<!doctype html><html><body>Service busy</body></html>", content_type="text/html")
        elif label.startswith("empty-"):
            body = b""
        elif label.startswith("truncated-"):
            body = body[: len(body) // 2]
        elif label.startswith("nonutf8-"):
            body = body.replace(b'"domain"', b'"dom\xe4in"', 1)
        return web.Response(body=body, content_type="application/rdap+json")

    @classmethod
    def with_servers(cls, registries: int, registrars: int, tlds: list[str], **kwargs: Any) -> FakeWhoisServices:
        """A fake with ``registries`` RDAP registries (one TLD each, from ``tlds``) and ``registrars``."""
        return cls(
            rdap_tlds={tld: f"https://rdap.registry-{tld}.example/{tld}/" for tld in tlds[:registries]},
            rdap_registrars=tuple(f"rdap.registrar-{i + 1}.example" for i in range(registrars)),
            **kwargs,
        )

    def registrar_of(self, domain: str) -> int:
        return _digest(domain) % len(self.rdap_registrars)

    def registry_rdap(self, domain: str, server: str, path: str) -> dict[str, Any]:
        """A registry's answer (Verisign's shape): registrar entity, events, nameservers, a related link."""
        n = _digest(domain)
        registrar = self.registrar_of(domain)
        registrar_url = f"https://{self.rdap_registrars[registrar]}/rdap/domain/{domain.upper()}"
        self_url = f"https://{server}/{path}"
        if _label(domain).startswith("loop-"):
            registrar_url = self_url
        return {
            "objectClassName": "domain",
            "handle": f"{n}_DOMAIN-FAKE",
            "ldhName": domain.upper(),
            "links": [
                {"value": self_url, "rel": "self", "href": self_url, "type": "application/rdap+json"},
                {"value": registrar_url, "rel": "related", "href": registrar_url, "type": "application/rdap+json"},
            ],
            "status": ["client transfer prohibited", "server delete prohibited"],
            "entities": [
                {
                    "objectClassName": "entity",
                    "handle": str(1000 + registrar),
                    "roles": ["registrar"],
                    "publicIds": [{"type": "IANA Registrar ID", "identifier": str(1000 + registrar)}],
                    "vcardArray": [
                        "vcard",
                        [["version", {}, "text", "4.0"], ["fn", {}, "text", f"Registrar {registrar + 1} LLC"]],
                    ],
                    "entities": [
                        {
                            "objectClassName": "entity",
                            "roles": ["abuse"],
                            "vcardArray": [
                                "vcard",
                                [
                                    ["version", {}, "text", "4.0"],
                                    ["fn", {}, "text", ""],
                                    ["tel", {"type": "voice"}, "uri", f"tel:+1.55500{registrar}"],
                                    ["email", {}, "text", f"abuse@registrar-{registrar + 1}.example"],
                                ],
                            ],
                        }
                    ],
                }
            ],
            "events": [
                {"eventAction": "registration", "eventDate": f"20{10 + n % 10:02d}-03-0{1 + n % 9}T04:00:00Z"},
                {"eventAction": "expiration", "eventDate": f"20{30 + n % 5}-03-0{1 + n % 9}T04:00:00Z"},
                {"eventAction": "last changed", "eventDate": "2026-01-15T10:00:00Z"},
                {"eventAction": "last update of RDAP database", "eventDate": "2026-11-29T00:00:00Z"},
            ],
            "secureDNS": {"delegationSigned": n % 2 == 0},
            "nameservers": [
                {"objectClassName": "nameserver", "ldhName": f"NS{i}.HOSTING-{n % 7}.EXAMPLE"} for i in (1, 2)
            ],
            "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_0"],
        }

    def registrar_rdap(self, domain: str, server: str) -> dict[str, Any]:
        """A registrar's thick answer: registrant organization and country, RFC 9537 markers."""
        n = _digest(domain)
        return {
            "objectClassName": "domain",
            "ldhName": domain,
            "links": [
                {"rel": "self", "href": f"https://{server}/rdap/domain/{domain}", "type": "application/rdap+json"}
            ],
            "status": ["client transfer prohibited"],
            "events": [{"eventAction": "expiration", "eventDate": "2099-01-01T00:00:00Z"}],
            "entities": [
                {
                    "objectClassName": "entity",
                    "roles": ["registrant"],
                    "vcardArray": [
                        "vcard",
                        [
                            ["version", {}, "text", "4.0"],
                            ["fn", {}, "text", ""],
                            ["org", {}, "text", f"Example Holdings {n % 100}"],
                            ["adr", {"cc": "DE"}, "text", ["", "", "", "", "", "", ""]],
                            ["email", {}, "text", "REDACTED FOR PRIVACY"],
                        ],
                    ],
                }
            ],
            "redacted": [
                {
                    "name": {"type": "Registrant Name"},
                    "prePath": "$..entities[?(@.roles[0]=='registrant')].vcardArray[1][?(@[0]=='fn')][3]",
                    "method": "emptyValue",
                    "reason": {"type": "Server policy"},
                },
                {
                    "name": {"type": "Registrant Email"},
                    "method": "replacementValue",
                    "reason": {"type": "Server policy"},
                },
            ],
            "port43": server.replace("rdap.", "whois."),
        }

    # -- port 43 ------------------------------------------------------------------------------------

    def rdap_hosts(self) -> list[str]:
        hosts = [base.split("/")[2] for base in self.rdap_tlds.values()]
        return list(dict.fromkeys([*hosts, *self.rdap_registrars]))

    async def _start_whois(self, app: web.Application) -> None:
        # every RDAP host on a port of its own too, as real hosts are: a client's connection pool per
        # host must not make them share connections
        loop = asyncio.get_running_loop()
        for host in self.rdap_hosts():
            handler = web.Server(lambda request, host=host: self._rdap_for(host, request.path.lstrip("/")))
            server = await loop.create_server(handler, "127.0.0.1", 0)
            self._tcp_servers.append(server)
            self._http_handlers.append(handler)
            self.rdap_ports[host] = server.sockets[0].getsockname()[1]
        names = [IANA_WHOIS, *(server for server, _ in WHOIS_TLDS.values()), *WHOIS_REGISTRARS]
        for name in dict.fromkeys(names):
            server = await asyncio.start_server(
                lambda reader, writer, name=name: self._answer(name, reader, writer), "127.0.0.1", 0
            )
            self._tcp_servers.append(server)
            self.whois_ports[name] = server.sockets[0].getsockname()[1]

    async def _stop_whois(self, app: web.Application) -> None:
        for handler in self._http_handlers:
            await handler.shutdown(1.0)
        for server in self._tcp_servers:
            server.close()
        # answers still being made (slow-*): ended while the loop runs
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)

    async def _answer(self, server: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._answering.add(task)
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            query = line.decode("utf-8", "replace").strip()
            body = await self._whois_body(server, query)
            if body:
                writer.write(body)
                await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._answering.discard(task)
            writer.close()

    async def _whois_body(self, server: str, query: str) -> bytes:
        within = self._arrive(server, query)
        with self._lock:
            scripted = self.throttle_first.get(server, 0)
            if scripted > 0:
                self.throttle_first[server] = scripted - 1
        if scripted > 0:
            return self.throttle_text.encode()
        if not within:
            return THROTTLE_TEXT
        if server == IANA_WHOIS:
            return self.iana_answer(query).encode()
        domain = query.split()[-1].removesuffix("/e").lower()
        label = _label(domain)
        if label.startswith("slow-"):
            await asyncio.sleep(self.slow_seconds)
        if label.startswith("missing-") or domain in self.unregistered:
            footer = ">>> Last update of whois database: 2026-11-29T00:00:00Z <<<"
            return f'No match for "{domain.upper()}".\r\n{footer}\r\n'.encode()
        if server in WHOIS_REGISTRARS:
            if label.startswith("badregistrar-"):
                return b"\x00\x01\x02\xff\xfe binary"
            return self.registrar_text(domain, server).encode()
        tld = domain.rsplit(".", 1)[-1]
        kind = WHOIS_TLDS.get(tld, ("", "thin"))[1]
        text = {"thin": self.thin_text, "denic": self.denic_text, "nominet": self.nominet_text, "jprs": self.jprs_text}[
            kind
        ](domain, server)
        if label.startswith("garbage-"):
            return b"\x00\xff\x13\x37" * 50
        if label.startswith("html-"):
            return b"<!DOCTYPE html><html><head><title>WHOIS</title></head><body>Service unavailable</body></html>\r\n"
        if label.startswith("empty-"):
            return b""
        if label.startswith("truncated-"):
            return text.encode()[: len(text) // 2].rstrip(b"\r\n")
        if label.startswith("nonutf8-"):
            return bytes(range(0x80, 0x100)) * 4
        if label.startswith("latin1-"):
            return text.replace("Example Holdings", "Müller Ölwerke").encode("latin-1")
        return text.replace("\n", "\r\n").encode()

    def iana_answer(self, tld: str) -> str:
        tld = tld.strip().lower()
        if tld not in WHOIS_TLDS:
            return "% IANA WHOIS server\n\n% This query returned 0 objects.\n"
        server = WHOIS_TLDS[tld][0]
        return (
            "% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n"
            "% This query returned 1 object\n\n"
            f"refer:        {server}\n\ndomain:       {tld.upper()}\n\norganisation: Example Registry Services\n"
            f"whois:        {server}\n\nstatus:       ACTIVE\nremarks:      Registration information: http://www.nic.{tld}\n\n"
            "created:      1985-01-01\nchanged:      2026-01-01\nsource:       IANA\n"
        )

    def whois_registrar_of(self, domain: str) -> str:
        return WHOIS_REGISTRARS[_digest(domain) % len(WHOIS_REGISTRARS)]

    def thin_text(self, domain: str, server: str) -> str:
        """Verisign's thin registry format; for some names its bogus host records come first."""
        n = _digest(domain)
        registrar = self.whois_registrar_of(domain)
        if _label(domain).startswith("loop-"):
            registrar = server
        bogus = ""
        if n % 3 == 0:
            bogus = (
                f"   Server Name: {domain.upper()}.HOSTS.EXAMPLE\n   IP Address: 192.0.2.1\n"
                "   Registrar: BOGUS HOSTS INC.\n   Whois Server: whois.bogus.example\n\n"
            )
        return (
            f"\n{bogus}   Domain Name: {domain.upper()}\n"
            f"   Registry Domain ID: {n}_DOMAIN_FAKE-VRSN\n"
            f"   Registrar WHOIS Server: {registrar}\n"
            f"   Registrar URL: http://www.{registrar.removeprefix('whois.')}\n"
            "   Updated Date: 2025-03-31T07:36:34Z\n"
            f"   Creation Date: 20{10 + n % 10:02d}-02-21T19:24:57Z\n"
            f"   Registry Expiry Date: 20{30 + n % 5}-02-21T19:24:57Z\n"
            f"   Registrar: {registrar.split('.')[1].upper()}, LLC\n"
            f"   Registrar IANA ID: {2000 + n % 2}\n"
            "   Registrar Abuse Contact Email: abuse@registrar.example\n"
            "   Registrar Abuse Contact Phone: +1.5550100\n"
            "   Domain Status: clientTransferProhibited https://icann.org/epp#clientTransferProhibited\n"
            f"   Name Server: NS1.PARKING-{n % 5}.EXAMPLE\n   Name Server: NS2.PARKING-{n % 5}.EXAMPLE\n"
            "   DNSSEC: unsigned\n"
            "   URL of the ICANN Whois Inaccuracy Complaint Form: https://www.icann.org/wicf/\n"
            ">>> Last update of whois database: 2026-11-29T00:00:00Z <<<\n\n"
            "TERMS OF USE: You are not authorized to access or query our Whois database through the use of\n"
            "electronic processes that are high-volume and automated.\n"
        )

    def registrar_text(self, domain: str, server: str) -> str:
        """A registrar's thick answer, contacts withheld (2019 Temporary Specification)."""
        n = _digest(domain)
        return (
            f"Domain Name: {domain}\nRegistry Domain ID: {n}_DOMAIN_FAKE-VRSN\nRegistrar WHOIS Server: {server}\n"
            f"Registrar URL: https://www.{server.removeprefix('whois.')}\nUpdated Date: 2025-03-31T07:36:34.00Z\n"
            f"Creation Date: 20{10 + n % 10:02d}-02-21T19:24:57.00Z\n"
            "Registrar Registration Expiration Date: 2099-01-01T00:00:00.00Z\n"
            f"Registrar: {server.split('.')[1].upper()}, LLC\nRegistrar IANA ID: {2000 + n % 2}\n"
            "Domain Status: clientTransferProhibited https://www.icann.org/epp#clientTransferProhibited\n"
            "Registrant Name: REDACTED FOR PRIVACY\n"
            f"Registrant Organization: Example Holdings {n % 100}\n"
            "Registrant Street: REDACTED FOR PRIVACY\nRegistrant City: REDACTED FOR PRIVACY\n"
            "Registrant State/Province: BE\nRegistrant Country: DE\n"
            "Registrant Email: REDACTED FOR PRIVACY\n"
            f"Name Server: NS1.PARKING-{n % 5}.EXAMPLE\nName Server: NS2.PARKING-{n % 5}.EXAMPLE\n"
            "DNSSEC: unsigned\n>>> Last update of WHOIS database: 2026-11-29T00:00:00.00Z <<<\n"
        )

    def denic_text(self, domain: str, server: str) -> str:
        n = _digest(domain)
        return (
            f"Domain: {domain}\nNserver: ns1.hosting-{n % 7}.example\nNserver: ns2.hosting-{n % 7}.example\n"
            f"Status: connect\nChanged: 2025-0{1 + n % 9}-12T21:44:25+01:00\n"
        )

    def nominet_text(self, domain: str, server: str) -> str:
        n = _digest(domain)
        return (
            f"\n    Domain name:\n        {domain}\n\n"
            "    Registrar:\n        Example Registrar Ltd t/a Example [Tag = EXAMPLE]\n        URL: https://registrar.example\n\n"
            f"    Relevant dates:\n        Registered on: 1{n % 9}-Jun-2014\n        Expiry date:  1{n % 9}-Jun-2030\n"
            "        Last updated:  10-May-2025\n\n"
            "    Registration status:\n        Registered until expiry date.\n\n"
            f"    Name servers:\n        ns1.hosting-{n % 7}.example\n        ns2.hosting-{n % 7}.example\n\n"
            "    WHOIS lookup made at 09:42:27 29-Nov-2026\n\n"
            "-- \nThis WHOIS information is provided for free by the registry.\n"
        )

    def jprs_text(self, domain: str, server: str) -> str:
        n = _digest(domain)
        return (
            "[ JPRS database provides information on network administration. Its use is    ]\n"
            "[ restricted to network administration purposes.                              ]\n"
            "Domain Information:\n"
            f"a. [Domain Name]                {domain.upper()}\n"
            f"g. [Organization]               Example Holdings {n % 100} K.K.\n"
            f"p. [Name Server]                ns1.hosting-{n % 7}.example\n"
            f"p. [Name Server]                ns2.hosting-{n % 7}.example\n"
            "s. [Signing Key]                \n"
            "[State]                         Connected (2031/03/31)\n"
            "[Registered Date]               2001/03/22\n"
            "[Connected Date]                2001/03/22\n"
            "[Last Update]                   2026/04/01 01:05:57 (JST)\n"
        )

    # -- running ------------------------------------------------------------------------------------

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeWhoisServices]:
        """Serve RDAP and every port-43 server from one background thread."""
        with run_in_thread(self.make_app(), host, port, name="fake-whois") as handle:
            self.http = handle
            yield self

    def settings(self) -> dict[str, str]:
        """The crawl settings that send every real name of a referral chain here: the source's defaults
        (IANA's bootstrap URL and WHOIS server) stay as they are, the maps send them here."""
        assert self.http is not None
        base = self.http.base_url
        url_map = {BOOTSTRAP_PREFIX: base + "bootstrap/"}
        for host, port in self.rdap_ports.items():
            for scheme in ("https", "http"):
                url_map[f"{scheme}://{host}/"] = f"http://127.0.0.1:{port}/"
        return {
            "RDAP_URL_MAP": orjson.dumps(url_map).decode(),
            "WHOIS_SERVER_MAP": orjson.dumps(
                {name: f"127.0.0.1:{port}" for name, port in self.whois_ports.items()}
            ).decode(),
        }

    def queries(self, server: str) -> list[tuple[str, float]]:
        with self._lock:
            return [(query, when) for name, query, when in self.log if name == server]


def main() -> None:
    """Own process: serve until SIGTERM/SIGINT; print one JSON line with the pid and the crawl settings
    (``export`` them, or pass them with ``-s``)."""
    import argparse

    from tests.fakes._server import run_standalone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the RDAP port (0: any); port-43 servers take any")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s every server allows")
    options = parser.parse_args()
    fake = FakeWhoisServices(rate=options.rate)

    def describe(handle: ServerHandle) -> dict[str, Any]:
        fake.http = handle
        return {"rdap_url": handle.base_url, "settings": fake.settings()}

    run_standalone(fake.make_app(), options.host, options.port, describe)


if __name__ == "__main__":
    main()
