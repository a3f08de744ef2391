"""The WHOIS source: one record per domain, from RDAP where the registry runs it, else port 43.

Arguments (``scrapy crawl whois -a …``):

* ``domains=example.com,example.de`` and/or ``domains_file=domains.txt`` (one per line; URLs and
  e-mail addresses are reduced to their host name);
* ``from=<source or namespace>``: the domains of stored records (``crawler.inputs``): e.g. a zone-file
  source's newly registered domains, or the homepage and repository domains of stored packages;
* ``force=true``: fetch domains stored within ``WHOIS_TTL`` too.

For each domain: IANA's RDAP bootstrap names the registry's RDAP service (longest label match, https
first), then the registrar's RDAP answer (a ``related`` link) is merged in. A TLD without RDAP goes to
port 43: ``WHOIS_IANA_SERVER`` refers it to the TLD's server (asked once per TLD), whose answer may
refer to the registrar's (``Registrar WHOIS Server:``). Requests per domain: at most 2 with RDAP, at
most 3 on port 43. Settings: ``source.py``.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson
import scrapy
from scrapy.exceptions import UsageError
from scrapy.http import Response
from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from twisted.python.failure import Failure

from crawler.inputs import registrable_domain, stored_domains
from crawler.spiders.base import EXPECTED_KEY_META, WORKER_MODE, SourceSpider
from crawler.spiders.whois.domain import DomainData
from crawler.spiders.whois.politeness import SLOT_META, parse_json_map
from crawler.spiders.whois.rdap import RDAP_MEDIA_TYPE, Bootstrap, BootstrapError, parse_domain
from crawler.spiders.whois.records import WhoisDomain
from crawler.spiders.whois.source import SOURCE
from crawler.spiders.whois.text import UnreadableAnswer, decode, is_not_found, parse_text, referral, throttle_wait
from crawler.spiders.whois.transport import parse_server_map

#: where the bootstrap file and its validators are kept between runs (in the crawl's store)
BOOTSTRAP_CACHE_KEY = "_cache/whois/rdap_bootstrap.json"
#: servers whose full answer needs a query of their own form
QUERY_FORMS = {"whois.denic.de": "-T dn,ace {domain}", "whois.jprs.jp": "{domain}/e"}
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


class WhoisSpider(SourceSpider):
    declaration = SOURCE
    custom_settings = {
        # hand out requests of the least busy server first: a resting server holds only its own
        "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
        "CONCURRENT_REQUESTS": 64,
    }
    smoke_arguments = {"domains": "example.com"}

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        # WHOIS_TTL is this source's name for the core's freshness TTL; FRESHNESS_TTL_SECONDS given on
        # the command line (above the policy's priority) still wins
        ttl = settings.get("WHOIS_TTL")
        policy_only = (settings.getpriority("FRESHNESS_TTL_SECONDS") or 0) <= SETTINGS_PRIORITIES["spider"]
        if ttl not in (None, "") and policy_only:
            settings.set("FRESHNESS_TTL_SECONDS", float(ttl), priority="spider")

    def __init__(
        self,
        domains: str | None = None,
        domains_file: str | None = None,
        force: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``domains``: comma-separated; ``domains_file``: one per line; ``from``: a source or namespace
        whose stored records name domains; ``force``: ignore WHOIS_TTL; ``mode=worker``: join a
        distributed crawl."""
        selector = kwargs.pop("from", None)
        super().__init__(**kwargs)
        self.mode = mode or "named"
        if self.mode not in ("named", WORKER_MODE):
            raise UsageError(f"whois: unknown mode {self.mode!r}; use named (the default) or worker")
        self.given = [d for d in (domains or "").split(",") if d.strip()]
        if domains_file:
            self.given += [line for line in Path(domains_file).read_text().splitlines() if line.strip()]
        self.selector = selector
        if self.mode == "named" and not self.given and not selector and self.shard is None:
            raise UsageError("whois: give -a domains=a.com,b.de, -a domains_file=…, or -a from=<source>")
        self.force = str(force).lower() in ("1", "true", "yes", "on") if force else False
        self.tld_servers: dict[str, str | None] = {}
        self.bootstrap: Bootstrap | None = None

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> WhoisSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        options = spider.options
        try:
            spider.url_map = parse_json_map(options["RDAP_URL_MAP"], "RDAP_URL_MAP")
            parse_server_map(options["WHOIS_SERVER_MAP"])
            parse_json_map(options["WHOIS_SERVER_RATES"], "WHOIS_SERVER_RATES", float)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        spider.iana_server = options["WHOIS_IANA_SERVER"].strip().lower()
        spider.follow_registrar = options["WHOIS_FOLLOW_REGISTRAR"]
        spider.raw_bytes = options["WHOIS_RAW_BYTES"]
        return spider

    # -- which domains ----------------------------------------------------------------------------

    def key_of_name(self, name: str) -> str:
        return normalize_domain(name) or name

    async def domains(self) -> list[str]:
        names = list(self.given)
        if self.selector:
            names += await asyncio.to_thread(lambda: list(stored_domains(self.crawler.settings, self.selector)))
        wanted = []
        for name in names:
            domain = normalize_domain(name)
            if domain is None:
                self.dead_letter("invalid_domain", payload=name.encode()[:300])
            else:
                wanted.append(domain)
        wanted = list(dict.fromkeys(wanted))
        if self.shard is not None:  # -a shard=i/n: this process's share of the domains
            index, count = self.shard
            wanted = [domain for domain in wanted if zlib.crc32(domain.encode()) % count == index]
        return wanted

    async def not_fresh(self, names: list[str]) -> list[str]:
        return names if self.force else await super().not_fresh(names)

    async def start(self) -> AsyncIterator[Any]:
        if self.mode == WORKER_MODE:
            return
        names = await self.not_fresh(await self.domains())
        if not names:
            self.monitor_min_items = 0  # everything asked for is fresh: rightly nothing to store
            return
        self.bootstrap = await self.load_bootstrap()
        for domain in names:
            await self.room_in_scheduler()
            request = await self.first_request(domain)
            if request is not None:
                yield request

    async def first_request(self, domain: str) -> scrapy.Request | None:
        """RDAP when the bootstrap names a service for the domain, else port 43 via IANA's referral."""
        bases = self.bootstrap.base_urls(domain) if self.bootstrap is not None else []
        if bases:
            return self.rdap_request(domain, f"{bases[0]}domain/{domain}")
        tld = domain.rsplit(".", 1)[-1]
        server = await self.tld_server(tld)
        if server is None:
            # remembered: IANA answered without a referral; else its answer failed (retries spent)
            reason = "no_whois_server: IANA names none" if tld in self.tld_servers else "iana_unavailable: no answer"
            self.dead_letter(f"{reason} for .{tld}", url=f"whois://{self.iana_server}/{tld}", payload=domain)
            return None
        return self.whois_request(domain, server, self.parse_whois, chain=(server,))

    # -- the bootstrap and IANA's referrals: asked once, not per domain ---------------------------

    async def load_bootstrap(self) -> Bootstrap | None:
        """The RDAP bootstrap: the stored copy while younger than WHOIS_BOOTSTRAP_MAX_AGE, else asked
        for again with its validators (a 304 renews the stored copy). Without one, port 43 serves all."""
        store = self.services.store
        cached = await asyncio.to_thread(_read_cache, store)
        max_age = self.options["WHOIS_BOOTSTRAP_MAX_AGE"]
        if cached and time.time() - cached.get("fetched_at", 0) < max_age:
            self.crawler.stats.set_value("whois/bootstrap", "cached")
            return _bootstrap_or_none(cached.get("document"))
        url = self.options["RDAP_BOOTSTRAP_URL"]
        headers = {"Accept": "application/json"}
        if cached and cached.get("etag"):
            headers["If-None-Match"] = cached["etag"]
        if cached and cached.get("last_modified"):
            headers["If-Modified-Since"] = cached["last_modified"]
        request = scrapy.Request(self.map_url(url), headers=headers, meta={SLOT_META: _host(url)}, dont_filter=True)
        try:
            response = await self.crawler.engine.download_async(request)
        except Exception as exc:  # any download failure: keep the stored copy
            self.dead_letter(f"bootstrap_unavailable: {type(exc).__name__}: {str(exc)[:200]}", url=url)
            return _bootstrap_or_none(cached.get("document")) if cached else None
        if response.status == 304 and cached:
            self.crawler.stats.set_value("whois/bootstrap", "not_modified")
            cached["fetched_at"] = time.time()
            await asyncio.to_thread(_write_cache, store, cached)
            return _bootstrap_or_none(cached.get("document"))
        document = None
        if response.status == 200:
            try:
                document = orjson.loads(response.body)
                bootstrap = Bootstrap(document)
            except (orjson.JSONDecodeError, BootstrapError) as exc:
                self.dead_letter(f"invalid_bootstrap: {exc}", response=response, payload=response.body)
                document = None
        else:
            self.dead_letter(f"bootstrap_unavailable: http_{response.status}", response=response, payload=response.body)
        if document is None:
            return _bootstrap_or_none(cached.get("document")) if cached else None
        self.crawler.stats.set_value("whois/bootstrap", "fetched")
        entry = {
            "fetched_at": time.time(),
            "etag": response.headers.get(b"ETag", b"").decode("latin-1") or None,
            "last_modified": response.headers.get(b"Last-Modified", b"").decode("latin-1") or None,
            "document": document,
        }
        await asyncio.to_thread(_write_cache, store, entry)
        return bootstrap

    async def tld_server(self, tld: str) -> str | None:
        """The TLD's WHOIS server, as IANA's server refers it (once per TLD and crawl)."""
        if tld in self.tld_servers:
            return self.tld_servers[tld]
        url = f"whois://{self.iana_server}/{quote(tld)}"
        request = scrapy.Request(url, meta={SLOT_META: self.iana_server}, dont_filter=True)
        try:
            response = await self.crawler.engine.download_async(request)
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            server = referral(decode(response.body))
        except Exception as exc:  # a failed or throttled answer: not remembered, the next domain asks again
            self.logger.warning("whois: %s gave no answer for .%s: %s", self.iana_server, tld, exc)
            self.crawler.stats.inc_value("whois/iana_failures")
            return None
        self.tld_servers[tld] = server  # an answer without a referral: no server for this TLD
        self.crawler.stats.inc_value("whois/iana_referrals")
        return server

    # -- RDAP -------------------------------------------------------------------------------------

    def map_url(self, url: str) -> str:
        """``RDAP_URL_MAP``: the longest matching prefix replaced."""
        for prefix in sorted(self.url_map, key=len, reverse=True):
            if url.startswith(prefix):
                return self.url_map[prefix] + url[len(prefix) :]
        return url

    def rdap_request(self, domain: str, url: str, **kwargs: Any) -> scrapy.Request:
        callback = kwargs.pop("callback", self.parse_rdap)
        return scrapy.Request(
            self.map_url(url),
            callback=callback,
            errback=self.registrar_failed if callback == self.parse_registrar_rdap else self.errback,
            headers={"Accept": f"{RDAP_MEDIA_TYPE}, application/json"},
            meta={
                EXPECTED_KEY_META: domain,
                "domain": domain,
                "server": _host(url),
                SLOT_META: _host(url),
                "handle_httpstatus_list": [404],
            },
            cb_kwargs=kwargs,
            dont_filter=True,
        )

    async def parse_rdap(self, response: Response) -> AsyncIterator[Any]:
        """The registry's RDAP answer: the record, or the registrar's answer to merge first."""
        domain = response.meta["domain"]
        if response.status == 404:
            async for item in self.not_registered(domain, response):
                yield item
            return
        data = self.read_rdap(response)
        if data is None:
            return
        link = data.registrar_rdap_url
        if self.follow_registrar and link and _host(link) != response.meta["server"]:
            yield self.rdap_request(
                domain,
                link,
                callback=self.parse_registrar_rdap,
                registry=data.to_dict(),
                registry_raw=response.body.decode("utf-8", "replace") if self.raw_bytes else "",
                registry_server=response.meta["server"],
            )
            return
        if record := self.record(domain, data, response, "rdap", response.meta["server"], raw=[response.body]):
            yield record

    def parse_registrar_rdap(
        self, response: Response, registry: dict[str, Any], registry_raw: str, registry_server: str
    ) -> Iterator[Any]:
        """The registrar's RDAP answer, merged into the registry's (which wins where both speak)."""
        domain = response.meta["domain"]
        data = DomainData.from_dict(registry)
        registrar = None
        if response.status == 404:
            self.dead_letter("registrar_not_found", response=response, payload=response.body)
        else:
            registrar = self.read_rdap(response, registrar=True)
        if registrar is not None:
            data = data.filled_from(registrar)
        server = response.meta["server"] if registrar is not None else None
        raws = [registry_raw.encode(), response.body if registrar is not None else b""]
        if record := self.record(domain, data, response, "rdap", registry_server, raw=raws, registrar_server=server):
            yield record

    def read_rdap(self, response: Response, *, registrar: bool = False) -> DomainData | None:
        doc = self.parse_json(response)
        if doc is None:
            return None
        try:
            data = parse_domain(doc)
        except ValueError as exc:
            self.dead_letter(f"invalid_rdap: {exc}", response=response, payload=response.body)
            return None
        if registrar and data.domain not in (None, response.meta["domain"]):
            # the registrar answered for another domain: never merged into this one
            self.dead_letter(f"registrar_key_mismatch: {data.domain!r}"[:200], response=response, payload=response.body)
            return None
        return data

    def registrar_failed(self, failure: Failure) -> Iterator[Any]:
        """The registrar did not answer: the registry's answer is still the record (and the failed
        request a dead letter)."""
        request = failure.request
        arguments = request.cb_kwargs
        protocol = "whois" if request.url.startswith("whois:") else "rdap"
        registry_server = arguments.get("registry_server") or (arguments.get("chain") or (None,))[0]
        response = getattr(failure.value, "response", None) or Response(request.url, request=request)
        data = DomainData.from_dict(arguments["registry"])
        raw = [arguments["registry_raw"].encode()]
        if record := self.record(request.meta["domain"], data, response, protocol, registry_server, raw=raw):
            yield record
        yield from self.errback(failure)

    # -- port 43 ----------------------------------------------------------------------------------

    def whois_request(self, domain: str, server: str, callback: Any, **kwargs: Any) -> scrapy.Request:
        query = QUERY_FORMS.get(server, "{domain}").format(domain=domain)
        return scrapy.Request(
            f"whois://{server}/{quote(query, safe='/,.@:-_')}",
            callback=callback,
            errback=self.registrar_failed if callback == self.parse_registrar_whois else self.errback,
            meta={EXPECTED_KEY_META: domain, "domain": domain, "server": server, SLOT_META: server},
            cb_kwargs=kwargs,
            dont_filter=True,
        )

    async def parse_whois(self, response: Response, chain: tuple[str, ...] = ()) -> AsyncIterator[Any]:
        """The TLD server's answer: the record, or the registrar's answer to merge first."""
        domain = response.meta["domain"]
        text = self.read_text(response)
        if text is None:
            return
        if is_not_found(text):
            async for item in self.not_registered(domain, response):
                yield item
            return
        data = self.read_answer(domain, text, response)
        if data is None:
            return
        server = data.registrar_whois_server
        if self.follow_registrar and _referable(server) and server not in chain:
            yield self.whois_request(
                domain,
                server,
                self.parse_registrar_whois,
                chain=(*chain, server),
                registry=data.to_dict(),
                registry_raw=text if self.raw_bytes else "",
            )
            return
        if record := self.record(domain, data, response, "whois", chain[0] if chain else None, raw=[response.body]):
            yield record

    def parse_registrar_whois(
        self, response: Response, chain: tuple[str, ...], registry: dict[str, Any], registry_raw: str
    ) -> Iterator[Any]:
        """The registrar's port-43 answer, merged into the registry's."""
        domain = response.meta["domain"]
        data = DomainData.from_dict(registry)
        text = self.read_text(response)
        registrar = None
        if text is not None and is_not_found(text):
            self.dead_letter("registrar_not_found", response=response, payload=response.body)
        elif text is not None:
            registrar = self.read_answer(domain, text, response)
        if registrar is not None:
            data = data.filled_from(registrar)
        raws = [registry_raw.encode(), response.body if registrar is not None else b""]
        server = response.meta["server"] if registrar is not None else None
        if record := self.record(domain, data, response, "whois", chain[0], raw=raws, registrar_server=server):
            yield record

    def read_text(self, response: Response) -> str | None:
        try:
            text = decode(response.body)
        except UnreadableAnswer as exc:
            self.dead_letter(str(exc), response=response, payload=response.body)
            return None
        if throttle_wait(text) is not None:  # ThrottleAnswers turns these into 429s; never a record
            self.dead_letter("throttled", response=response, payload=response.body)
            return None
        return text

    def read_answer(self, domain: str, text: str, response: Response) -> DomainData | None:
        try:
            return parse_text(domain, text)
        except ValueError as exc:
            self.dead_letter(f"unparsable_answer: {exc}"[:300], response=response, payload=response.body)
            return None

    # -- records ----------------------------------------------------------------------------------

    async def not_registered(self, domain: str, response: Response) -> AsyncIterator[Any]:
        """The registry has no such domain: a tombstone when it was stored before, else a dead letter."""
        self.crawler.stats.inc_value("whois/not_registered")
        if await self.stored_before(WhoisDomain, domain):
            tld = domain.rsplit(".", 1)[-1]
            yield WhoisDomain(domain=domain, tld=tld, deleted=True, source_server=response.meta.get("server"))
        else:
            self.not_found(domain, response)

    def record(
        self,
        domain: str,
        data: DomainData,
        response: Response,
        protocol: str,
        source_server: str | None,
        *,
        raw: list[bytes],
        registrar_server: str | None = None,
    ) -> WhoisDomain | None:
        raw_text = b"\n\n".join(part for part in raw if part)
        payload = {
            "domain": data.domain or domain,
            "tld": domain.rsplit(".", 1)[-1],
            "protocol": protocol,
            "source_server": source_server,
            "registrar_server": registrar_server,
            "registrar": data.registrar,
            "registrar_iana_id": data.registrar_iana_id,
            "registrar_url": data.registrar_url,
            "registrar_abuse_email": data.registrar_abuse_email,
            "registrar_abuse_phone": data.registrar_abuse_phone,
            "created": data.created,
            "updated": data.updated,
            "expires": data.expires,
            "status": data.status,
            "name_servers": data.name_servers,
            "dnssec": data.dnssec,
            "registrant_organization": data.registrant_organization,
            "registrant_country": data.registrant_country,
            "redacted": data.redacted,
            "raw": raw_text[: self.raw_bytes].decode("utf-8", "replace") if self.raw_bytes and raw_text else None,
        }
        self.crawler.stats.inc_value(f"whois/records/{protocol}")
        return self.build(lambda values: WhoisDomain(**values), payload, response=response, raw=response.body)

    def smoke_requests(self) -> list[scrapy.Request]:
        registry = DomainData(domain="example.com", registrar="Example Registrar").to_dict()
        return [
            self.rdap_request("example.com", "https://rdap.example/domain/example.com"),
            self.rdap_request(
                "example.com",
                "https://rdap.registrar.example/domain/example.com",
                callback=self.parse_registrar_rdap,
                registry=registry,
                registry_raw="",
                registry_server="rdap.example",
            ),
            self.whois_request("example.de", "whois.denic.de", self.parse_whois, chain=("whois.denic.de",)),
            self.whois_request(
                "example.com",
                "whois.registrar.example",
                self.parse_registrar_whois,
                chain=("whois.verisign-grs.com", "whois.registrar.example"),
                registry=registry,
                registry_raw="",
            ),
        ]

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """Fetch the domains of these dead letters again (``force``: they may be within the TTL)."""
        domains, ids = {}, []
        for row in failed:
            url = row.get("url") or ""
            parts = urlsplit(url)
            if parts.scheme == "whois":
                query = unquote(parts.path.removeprefix("/")).split()[-1:] or [""]
                candidate = query[0].removesuffix("/e")
            elif "/domain/" in parts.path:
                candidate = parts.path.rsplit("/domain/", 1)[-1]
            else:
                continue
            domain = normalize_domain(candidate)
            if domain:
                domains[domain] = True
                ids.append(row["id"])
        return ({"domains": ",".join(domains), "force": "true"} if domains else {}), ids


def normalize_domain(value: str) -> str | None:
    """A domain as the registries know it: the registrable domain (a URL, a host name or an e-mail
    address gives it), lower case, in A-labels. None when it names none."""
    domain = registrable_domain(value.strip().lower().rstrip("."))
    if domain is None:
        return None
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return domain if _DOMAIN.match(domain) else None


def _referable(server: str | None) -> bool:
    """A referral worth following: a host name, not empty, not a URL (some registries print one)."""
    return bool(server) and "://" not in server and "/" not in server and "." in server and " " not in server


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _read_cache(store: Any) -> dict[str, Any] | None:
    try:
        return orjson.loads(store.get_bytes(BOOTSTRAP_CACHE_KEY))
    except Exception:  # absent or unreadable: fetch it again
        return None


def _write_cache(store: Any, entry: dict[str, Any]) -> None:
    store.put_bytes(BOOTSTRAP_CACHE_KEY, orjson.dumps(entry), content_type="application/json")


def _bootstrap_or_none(document: Any) -> Bootstrap | None:
    try:
        return Bootstrap(document)
    except BootstrapError:
        return None
