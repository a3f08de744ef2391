"""The email-pattern source: for each company domain, its address pattern, a confidence, the evidence.

Arguments (``scrapy crawl emails -a …``, combinable):

* ``domains=example.com,…`` and/or ``domains_file=…`` (one domain per line): the domains to compute;
* ``refresh=true``: compute them even if they were computed within the freshness TTL (24 h);
* ``from=<source or namespace>``: read what that source stored (:mod:`crawler.inputs`). When its records
  name people (name and address columns: commits, profiles, maintainers), their addresses are the
  inference's evidence, and every domain with at least ``EMAILS_MIN_ADDRESSES`` named addresses is
  computed (unless ``domains`` narrows them); when they only name domains (registrants' domains),
  those domains are computed.

Per domain, in order: the inference from stored data (no network), then Hunter's domain search
(``HUNTER_API_KEY`` set; pages until Hunter has no more or ``HUNTER_MAX_PAGES``), then
Clearbit's company lookup and person lookups for addresses published without a name
(``CLEARBIT_API_KEY`` set). The sources' addresses are scored together (:mod:`.patterns`) into
one pattern and confidence; each source's own view is kept in ``evidence``, so disagreements show.
One record per domain (namespace ``emails``); a domain computed within 24 h is not computed again
(the policy's freshness TTL).

Hunter's answers: 400/422 (not a domain it accepts) are dead letters and the domain gets no record;
401 and 429 stop Hunter for the run (reported once; 429 ends the run with finish reason
``hunter_usage_exhausted`` once the other work is done); 403 and 202 are sent again after a back-off
(:mod:`.middleware`, which also keeps the credit budget). A Clearbit endpoint that answers
401/403/404/410 without Clearbit's own not-found body is retired: reported once, skipped for the run.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import CloseSpider, UsageError
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.inputs import record_types, stored_domains, stored_people
from crawler.spiders.base import SourceSpider
from crawler.spiders.emails import clearbit, hunter
from crawler.spiders.emails.middleware import API_META, CLEARBIT, HUNTER, HunterBudget, NotSent
from crawler.spiders.emails.patterns import (
    TEMPLATES,
    DomainEvidence,
    decide,
    domain_kind,
    infer_patterns,
    why_ignored,
)
from crawler.spiders.emails.records import EmailPattern, Evidence, SampleAddress
from crawler.spiders.emails.source import SOURCE

#: pseudo-addresses that Hunter's stated pattern weighs, on top of the addresses it returns
HUNTER_PATTERN_WEIGHT = 2.0
HUNTER_STATUSES = [202, 222, 400, 401, 403, 422, 429]
CLEARBIT_STATUSES = [202, 401, 403, 404, 410, 422]


@dataclass
class Lookup:
    """One domain's way through the sources."""

    domain: str
    stored: DomainEvidence | None = None
    #: hunter -> clearbit -> people -> done
    stage: str = "hunter"
    hunter: hunter.HunterDomain | None = None
    company: clearbit.ClearbitCompany | None = None
    people: list[tuple[str | None, str]] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)


class EmailsSpider(SourceSpider):
    declaration = SOURCE
    # every domain asked for was computed within the TTL: a run may rightly store nothing
    monitor_min_items = 0

    def __init__(
        self,
        domains: str | None = None,
        domains_file: str | None = None,
        refresh: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``domains``: comma-separated; ``domains_file``: one per line; ``from`` (a keyword in Python, so
        read from ``kwargs``): a source or namespace whose stored people or domains to use; ``refresh=true``:
        compute the domains even when they were computed within the freshness TTL."""
        selector = kwargs.pop("from", None)
        super().__init__(**kwargs)
        self.refresh = (refresh or "").strip().lower() in ("1", "true", "yes")
        names = (domains or "").split(",")
        if domains_file:
            names += Path(domains_file).read_text().splitlines()
        self.domains = list(dict.fromkeys(d.strip().lower().lstrip("@").rstrip(".") for d in names if d.strip()))
        self.selector: str | None = selector
        if selector is not None:
            record_types(selector)  # a UsageError now for a name that is no source or namespace
        if not self.domains and selector is None:
            raise UsageError("emails: give -a domains=example.com,… (or domains_file=…), or -a from=<source>")
        #: Hunter's API base when a key is set (else no Hunter look-ups), and the run's credit budget
        self.hunter_api: str | None = None
        self.hunter_budget = HunterBudget(0)
        self.clearbit_on = False
        #: why Clearbit was found retired (``http_410``), once it was
        self.clearbit_retired: str | None = None

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> EmailsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        options = spider.options
        spider.hunter_api = options["HUNTER_API_URL"] if options["HUNTER_API_KEY"] else None
        if options["HUNTER_API_KEY"] and not spider.hunter_api:
            raise UsageError("emails: HUNTER_API_KEY is set: set HUNTER_API_URL too")
        spider.hunter_budget = HunterBudget(options["HUNTER_MAX_REQUESTS"])
        spider.clearbit_on = bool(options["CLEARBIT_API_KEY"])
        if spider.clearbit_on and not (options["CLEARBIT_COMPANY_URL"] or options["CLEARBIT_PERSON_URL"]):
            raise UsageError("emails: CLEARBIT_API_KEY is set: set CLEARBIT_COMPANY_URL/_PERSON_URL")
        crawler.signals.connect(spider.finish_reason, signal=signals.spider_idle)
        crawler.signals.connect(spider.count_budget, signal=signals.spider_closed)
        return spider

    # -- start ------------------------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Any]:
        stored: dict[str, DomainEvidence] = {}
        domains = list(self.domains)
        if self.selector is not None:
            stored, found = await asyncio.to_thread(self.read_stored, self.selector, set(domains) or None)
            domains = domains or found
        domains = [d for d in domains if self.acceptable(d)]
        if self.shard is not None:  # -a shard=i/n: this process computes the domains of shard i of n
            index, count = self.shard
            domains = [d for d in domains if zlib.crc32(d.encode()) % count == index]
        self.crawler.stats.set_value("emails/domains_asked", len(domains))
        for domain in await self.not_fresh(domains):
            kind = domain_kind(domain)
            if kind is not None:  # webmail or disposable: the record says so; no look-up spends a credit
                self.crawler.stats.inc_value(f"emails/records/{kind}")
                yield EmailPattern(
                    domain=domain, webmail=kind == "webmail", disposable=kind == "disposable", computed_at=_now()
                )
                continue
            await self.room_in_scheduler()
            lookup = Lookup(domain, stored.get(domain))
            for output in self.advance(lookup):
                yield output

    async def not_fresh(self, names: list[str]) -> list[str]:
        return names if self.refresh else await super().not_fresh(names)

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """The domains of these dead letters (from the ``domain=`` or ``email=`` of their URL), computed again
        whatever the freshness TTL says; a domain Hunter refused (400/422) is not retried."""
        domains: dict[str, None] = {}
        ids = []
        for row in failed:
            if str(row.get("reason") or "").startswith("hunter_bad_domain"):
                continue
            query = parse_qs(urlsplit(row.get("url") or "").query)
            domain = (query.get("domain") or [""])[0] or (query.get("email") or ["@"])[0].rpartition("@")[2]
            if domain:
                domains[domain.lower()] = None
                ids.append(row["id"])
        return ({"domains": ",".join(domains), "refresh": "true"} if domains else {}), ids

    def read_stored(self, selector: str, only: set[str] | None) -> tuple[dict[str, DomainEvidence], list[str]]:
        """The evidence in what ``selector`` stored, and the domains it proposes (see the module doc)."""
        settings = self.crawler.settings
        if any(t.people_columns for t in record_types(selector)):
            inference = infer_patterns(
                stored_people(settings, selector), domains=only, sample_limit=self.options["EMAILS_SAMPLE_LIMIT"]
            )
            for reason, count in inference.ignored.items():
                self.crawler.stats.set_value(f"emails/stored/ignored/{reason}", count)
            self.crawler.stats.set_value("emails/stored/pairs", inference.pairs)
            least = self.options["EMAILS_MIN_ADDRESSES"]
            ranked = sorted(inference.domains.items(), key=lambda item: (-item[1].addresses, item[0]))
            return inference.domains, [d for d, found in ranked if found.addresses >= least and found.counts]
        try:
            return {}, list(stored_domains(settings, selector))
        except UsageError:
            raise UsageError(f"emails: from={selector}: its records name neither people nor domains") from None

    def acceptable(self, domain: str) -> bool:
        """Not a noreply host or a malformed domain (counted, and a warning, when one is dropped)."""
        kind = domain_kind(domain)
        if kind in ("noreply", "invalid"):
            self.crawler.stats.inc_value(f"emails/skipped_domains/{kind}")
            self.logger.warning("emails: %r is no company domain (%s): skipped", domain[:200], kind)
            return False
        return True

    # -- the way of one domain --------------------------------------------------------------------

    def advance(self, lookup: Lookup) -> Iterator[Any]:
        """The next request of ``lookup``, or its record once every source had its say."""
        if lookup.stage == "hunter":
            if self.hunter_api and self.hunter_budget.can_spend():
                found = lookup.hunter
                pages = found.pages if found else 0
                size = self.options["HUNTER_PAGE_SIZE"]
                more = found is None or (pages * size < found.results and pages < self.options["HUNTER_MAX_PAGES"])
                if more:
                    yield self.hunter_request(lookup, offset=pages * size)
                    return
            elif self.hunter_api:
                self.crawler.stats.inc_value(f"emails/hunter/skipped/{self.hunter_budget.stopped or 'budget_spent'}")
            lookup.stage = "clearbit"
        if lookup.stage == "clearbit":
            lookup.stage = "people"
            if self.clearbit_on and not self.clearbit_retired and self.options["CLEARBIT_COMPANY_URL"]:
                yield self.clearbit_request(
                    lookup,
                    self.options["CLEARBIT_COMPANY_URL"],
                    {"domain": lookup.domain},
                    self.parse_clearbit_company,
                )
                return
        if lookup.stage == "people":
            url = self.options["CLEARBIT_PERSON_URL"]
            if lookup.unnamed and self.clearbit_on and not self.clearbit_retired and url:
                address = lookup.unnamed.pop(0)
                yield self.clearbit_request(lookup, url, {"email": address}, self.parse_clearbit_person)
                return
            lookup.stage = "done"
        yield self.record(lookup)

    def hunter_request(self, lookup: Lookup, offset: int) -> scrapy.Request:
        url = hunter.search_url(self.hunter_api or "", lookup.domain, self.options["HUNTER_PAGE_SIZE"], offset)
        return scrapy.Request(
            url,
            callback=self.parse_hunter,
            errback=self.lookup_failed,
            cb_kwargs={"lookup": lookup},
            meta={API_META: HUNTER, "handle_httpstatus_list": HUNTER_STATUSES},
            dont_filter=True,
        )

    def clearbit_request(self, lookup: Lookup, base: str, query: dict[str, str], callback: Any) -> scrapy.Request:
        return scrapy.Request(
            f"{base}{'&' if '?' in base else '?'}{urlencode(query)}",
            callback=callback,
            errback=self.lookup_failed,
            cb_kwargs={"lookup": lookup},
            meta={API_META: CLEARBIT, "handle_httpstatus_list": CLEARBIT_STATUSES},
            dont_filter=True,
        )

    smoke_arguments = {"domains": "example.com"}

    def smoke_requests(self) -> list[scrapy.Request]:
        self.hunter_api = self.hunter_api or "http://127.0.0.1:9/"
        company, person = "http://127.0.0.1:9/v2/companies/find", "http://127.0.0.1:9/v2/people/find"
        return [
            self.hunter_request(Lookup("example.com"), offset=0),
            self.clearbit_request(
                Lookup("example.com", stage="people"), company, {"domain": "example.com"}, self.parse_clearbit_company
            ),
            self.clearbit_request(
                Lookup("example.com", stage="people"), person, {"email": "a@example.com"}, self.parse_clearbit_person
            ),
        ]

    # -- callbacks --------------------------------------------------------------------------------

    def parse_hunter(self, response: Response, lookup: Lookup) -> Iterator[Any]:
        status = response.status
        if status in (400, 422):
            self.crawler.stats.inc_value("emails/hunter/bad_domain")
            self.dead_letter(f"hunter_bad_domain: http_{status}", response=response, payload=response.body)
            return  # not a domain Hunter accepts: no record
        if status in (401, 429, 403, 202):
            reason = {401: "unauthorized", 429: "usage_exhausted", 403: "rate_limited", 202: "not_ready"}[status]
            if status in (403, 202) or self.crawler.stats.get_value(f"emails/hunter/reported/{reason}") is None:
                # 401 and 429 stop Hunter for the run: one dead letter, not one per domain
                self.crawler.stats.set_value(f"emails/hunter/reported/{reason}", 1)
                self.dead_letter(f"hunter_{reason}: http_{status}", response=response, payload=response.body)
            lookup.stage = "clearbit"
            yield from self.advance(lookup)
            return
        doc = self.parse_json(response)
        if doc is not None:
            found = lookup.hunter or hunter.HunterDomain()
            try:
                hunter.read_page(doc, found)
                lookup.hunter = found
                if status == 222:
                    self.crawler.stats.inc_value("emails/hunter/verification_failed")
            except ValueError as exc:
                self.dead_letter(f"invalid_answer: {exc}", response=response, payload=response.body)
                lookup.stage = "clearbit"
        else:
            lookup.stage = "clearbit"
        yield from self.advance(lookup)

    def parse_clearbit_company(self, response: Response, lookup: Lookup) -> Iterator[Any]:
        if self.clearbit_answer_ok(response):
            doc = self.parse_json(response)
            if doc is not None:
                try:
                    lookup.company = clearbit.read_company(doc)
                except ValueError as exc:
                    self.dead_letter(f"invalid_answer: {exc}", response=response, payload=response.body)
                else:
                    self.collect_unnamed(lookup)
        yield from self.advance(lookup)

    def parse_clearbit_person(self, response: Response, lookup: Lookup) -> Iterator[Any]:
        if self.clearbit_answer_ok(response):
            doc = self.parse_json(response)
            if doc is not None:
                try:
                    lookup.people.append(clearbit.read_person(doc))
                except ValueError as exc:
                    self.dead_letter(f"invalid_answer: {exc}", response=response, payload=response.body)
        yield from self.advance(lookup)

    def clearbit_answer_ok(self, response: Response) -> bool:
        """True for a 200; a not-found or queued answer is counted; a retired endpoint is reported once."""
        status = response.status
        if status == 200:
            return True
        if status == 202 or clearbit.is_not_found(status, response.body):
            self.crawler.stats.inc_value(f"emails/clearbit/no_record/http_{status}")
            if status == 202:
                self.dead_letter("clearbit_queued: http_202", response=response, payload=response.body)
            return False
        self.crawler.stats.inc_value("emails/clearbit/retired_answers")
        if self.clearbit_retired is None:
            self.clearbit_retired = f"http_{status}"
            self.logger.warning("clearbit: the endpoint answered %d: treated as retired, skipped for this run", status)
            self.dead_letter(f"clearbit_retired: http_{status}", response=response, payload=response.body)
        else:
            self.crawler.stats.inc_value("emails/clearbit/retired_answers_after_report")
        return False

    def lookup_failed(self, failure: Failure) -> Iterator[Any]:
        """A request that failed for good (or was not sent: Hunter's budget): the domain goes on without it."""
        request = failure.request
        lookup: Lookup = request.cb_kwargs["lookup"]
        if failure.check(NotSent):
            if request.meta.get(API_META) == HUNTER:
                self.crawler.stats.inc_value(f"emails/hunter/skipped/{self.hunter_budget.stopped or 'not_sent'}")
        else:
            yield from self.errback(failure)
        if request.callback == self.parse_hunter:
            lookup.stage = "clearbit"  # (a Clearbit request's stage moved on when it was made)
        yield from self.advance(lookup)

    # -- the record -------------------------------------------------------------------------------

    def collect_unnamed(self, lookup: Lookup) -> None:
        """Addresses at the domain published without a name (Clearbit's site addresses, Hunter's), to ask
        Clearbit's person lookup about: at most ``CLEARBIT_MAX_PEOPLE``, role accounts excluded."""
        candidates = list(lookup.company.addresses if lookup.company else [])
        if lookup.hunter:
            candidates += [e.address for e in lookup.hunter.emails if e.name is None]
        suffix = "@" + lookup.domain
        wanted = [a for a in dict.fromkeys(candidates) if a.endswith(suffix) and why_ignored("x", a) is None]
        lookup.unnamed = wanted[: self.options["CLEARBIT_MAX_PEOPLE"]]

    def record(self, lookup: Lookup) -> EmailPattern:
        options = self.options
        threshold, least, limit = (
            options["EMAILS_CONFIDENCE_THRESHOLD"],
            options["EMAILS_MIN_ADDRESSES"],
            options["EMAILS_SAMPLE_LIMIT"],
        )
        evidence: list[Evidence] = []
        samples: list[SampleAddress] = []
        combined: dict[str, float] = {}
        addresses = 0.0

        def weigh(source: str, found: DomainEvidence | None, stated: str | None = None) -> None:
            nonlocal addresses
            counts = dict(found.counts) if found else {}
            seen = float(found.addresses) if found else 0.0
            if stated in TEMPLATES:  # a pattern outside the templates is shown, not weighed
                counts[stated] = counts.get(stated, 0.0) + HUNTER_PATTERN_WEIGHT
                seen += HUNTER_PATTERN_WEIGHT
            if seen <= 0:
                return
            own = decide(counts, seen, threshold=threshold, min_addresses=1)
            evidence.append(
                Evidence(
                    source=source,
                    pattern=stated or own.candidate,
                    count=round(float(found.addresses) if found else 0.0, 2),
                    confidence=round(own.shares.get(stated or own.candidate or "", own.confidence), 4),
                )
            )
            for template, count in counts.items():
                combined[template] = combined.get(template, 0.0) + count
            addresses += seen

        if lookup.stored is not None:
            weigh(f"stored:{self.selector}", lookup.stored)
            samples += [SampleAddress(address=a, source=f"stored:{self.selector}") for a in lookup.stored.samples]
        found = lookup.hunter
        verified = None
        if found is not None:
            pairs = [(e.name, e.address) for e in found.emails]
            hunter_evidence = infer_patterns(pairs, domains={lookup.domain}, sample_limit=limit).domains.get(
                lookup.domain
            )
            weigh("hunter", hunter_evidence, found.pattern)
            status = {e.address: e.verification for e in found.emails}
            if hunter_evidence:
                samples += [
                    SampleAddress(address=a, source="hunter", verification=status.get(a))
                    for a in hunter_evidence.samples
                ]
            verified = sum(e.verification == "valid" for e in found.emails)
        if lookup.people:
            people = infer_patterns(lookup.people, domains={lookup.domain}, sample_limit=limit).domains.get(
                lookup.domain
            )
            weigh("clearbit", people)
            if people:
                samples += [SampleAddress(address=a, source="clearbit") for a in people.samples]
        decision = decide(combined, addresses, threshold=threshold, min_addresses=least)
        stats = self.crawler.stats
        stats.inc_value("emails/records/" + ("answered" if decision.pattern else "abstained"))
        if len({e.pattern for e in evidence if e.pattern}) > 1:
            stats.inc_value("emails/records/sources_disagree")
        return EmailPattern(
            domain=lookup.domain,
            pattern=decision.pattern,
            confidence=decision.confidence,
            candidate=decision.candidate,
            evidence=evidence,
            samples=list({s.address: s for s in samples}.values())[:limit],
            verified=verified,
            organization=(found.organization if found else None) or (lookup.company.name if lookup.company else None),
            webmail=found.webmail
            if found and found.webmail is not None
            else (lookup.company.webmail if lookup.company else None),
            disposable=found.disposable if found else None,
            accept_all=found.accept_all if found else None,
            computed_at=_now(),
        )

    # -- the run's end ----------------------------------------------------------------------------

    def finish_reason(self) -> None:
        """Once idle: a run whose Hunter plan ran out says so in its finish reason."""
        if self.hunter_budget.stopped == "usage_exhausted":
            raise CloseSpider("hunter_usage_exhausted")

    def count_budget(self) -> None:
        stats = self.crawler.stats
        stats.set_value("emails/hunter/budget", self.hunter_budget.max_requests if self.hunter_api else 0)
        stats.set_value("emails/hunter/spent", self.hunter_budget.sent)
        if self.clearbit_retired:
            stats.set_value("emails/clearbit/retired", self.clearbit_retired)


def _now() -> datetime:
    return datetime.now(UTC)
