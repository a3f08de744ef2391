"""The ``whois`` namespace: one record per domain, whichever protocol served it."""

from __future__ import annotations

from datetime import datetime

from crawler.items.base import Record


class WhoisDomain(Record):
    """A domain's registration as its registry (and registrar, merged) published it.

    A tombstone (a domain stored before that the registry no longer knows) carries only the domain,
    the TLD and ``deleted``."""

    namespace = "whois"
    table = "whois_domain"
    key = ("domain",)
    schema_version = 1
    #: other sources read the domains this one stored (``crawler.inputs``)
    domain_columns = ("domain",)

    domain: str
    tld: str
    #: ``rdap`` or ``whois`` (port 43)
    protocol: str | None = None
    #: the registry's server (RDAP host or WHOIS server) and the registrar's, when followed
    source_server: str | None = None
    registrar_server: str | None = None
    registrar: str | None = None
    registrar_iana_id: str | None = None
    registrar_url: str | None = None
    registrar_abuse_email: str | None = None
    registrar_abuse_phone: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    expires: datetime | None = None
    #: EPP status codes in their camelCase form (``clientTransferProhibited``); a registry's own words
    #: (``connect``, ``Registered until expiry date.``) as given
    status: list[str] = []
    #: lower case, in the registry's order
    name_servers: list[str] = []
    #: True: the delegation is signed; False: unsigned; None: not published
    dnssec: bool | None = None
    registrant_organization: str | None = None
    registrant_country: str | None = None
    #: the fields the answers mark as redacted (RFC 9537 names, or "<Contact> <Field>" for text answers)
    redacted: list[str] = []
    #: the answers as received (registry first), cut at WHOIS_RAW_BYTES, for re-parsing
    raw: str | None = None
    deleted: bool = False
