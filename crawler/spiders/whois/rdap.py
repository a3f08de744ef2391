"""RDAP (RFC 9082/9083): the bootstrap registry (RFC 9224), and a domain answer as :class:`DomainData`.

Entities and their jCard (RFC 7095) vCards, events, status, nameservers, secureDNS, and RFC 9537
``redacted`` markers: a field a marker names is listed in ``redacted`` and not stored as whatever
placeholder the server left in its place.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from crawler.spiders.whois.domain import (
    DomainData,
    clean,
    country_code,
    epp_status,
    host_name,
    is_redacted,
    parse_date,
    unique,
)

RDAP_MEDIA_TYPE = "application/rdap+json"
#: link relations that point at the registrar's own answer for the domain
REGISTRAR_RELS = ("related", "registration")
CREATED_EVENTS = ("registration",)
UPDATED_EVENTS = ("last changed", "last update")
EXPIRES_EVENTS = ("expiration",)


class BootstrapError(ValueError):
    """The bootstrap file is not an RFC 9224 registry."""


class Bootstrap:
    """TLD (or longer label sequence) -> RDAP base URLs, from IANA's ``dns.json``."""

    def __init__(self, document: Any) -> None:
        services = document.get("services") if isinstance(document, dict) else None
        if not isinstance(services, list):
            raise BootstrapError("no services list")
        self.bases: dict[str, list[str]] = {}
        for service in services:
            if not (isinstance(service, list) and len(service) >= 2):
                continue
            labels, urls = service[0], service[1]
            if not (isinstance(labels, list) and isinstance(urls, list)):
                continue
            urls = [u if u.endswith("/") else u + "/" for u in urls if isinstance(u, str) and u.strip()]
            # prefer https (RFC 9224 §3: use the secure one when several are listed)
            urls.sort(key=lambda u: not u.startswith("https://"))
            for label in labels:
                if isinstance(label, str) and urls:
                    self.bases[label.lower().strip(".")] = urls
        if not self.bases:
            raise BootstrapError("no entries")
        self.publication = document.get("publication")

    def base_urls(self, domain: str) -> list[str]:
        """The base URLs serving ``domain``: its longest label suffix with an entry."""
        labels = domain.lower().strip(".").split(".")
        for start in range(1, len(labels)):
            found = self.bases.get(".".join(labels[start:]))
            if found:
                return found
        return []


def parse_domain(document: Any) -> DomainData:
    """The facts of an RDAP domain object (RFC 9083 §5.3). Raises ValueError when it is none."""
    if not isinstance(document, dict):
        raise ValueError("not an RDAP domain object")
    kind = document.get("objectClassName")
    # a few pre-RFC 9083 servers leave the class out of an otherwise good domain object
    if kind != "domain" and not (kind is None and isinstance(document.get("ldhName"), str)):
        raise ValueError("not an RDAP domain object")
    data = DomainData(domain=(clean(document.get("ldhName")) or "").lower() or None)
    redacted_paths = _redactions(document.get("redacted"))
    data.redacted = sorted(redacted_paths)
    for event in _objects(document.get("events")):
        action = str(event.get("eventAction", "")).lower()
        when = parse_date(event.get("eventDate"))
        if action in CREATED_EVENTS:
            data.created = data.created or when
        elif action in EXPIRES_EVENTS:
            data.expires = data.expires or when
        elif action in UPDATED_EVENTS:
            data.updated = data.updated or when
    data.status = unique([s for s in map(epp_status, _list(document.get("status"))) if s])
    hosts = (host_name(server.get("ldhName")) for server in _objects(document.get("nameservers")))
    data.name_servers = unique([host for host in hosts if host])
    secure = document.get("secureDNS")
    if isinstance(secure, dict) and isinstance(secure.get("delegationSigned"), bool):
        data.dnssec = secure["delegationSigned"]
    for entity in _objects(document.get("entities")):
        roles = [str(r).lower() for r in _list(entity.get("roles"))]
        card = vcard(entity.get("vcardArray"))
        if "registrar" in roles:
            _registrar(data, entity, card)
        if "registrant" in roles:
            _registrant(data, entity, card, redacted_paths)
    data.registrar_rdap_url = registrar_link(document)
    port43 = clean(document.get("port43"))
    data.registrar_whois_server = port43.lower() if port43 else None
    return data


def _registrar(data: DomainData, entity: dict[str, Any], card: dict[str, list[Any]]) -> None:
    data.registrar = _first_text(card, "fn") or _first_text(card, "org")
    for public_id in _objects(entity.get("publicIds")):
        if str(public_id.get("type", "")).lower() == "iana registrar id":
            data.registrar_iana_id = clean(str(public_id.get("identifier", ""))) or None
    data.registrar_url = _first_text(card, "url") or next(
        (clean(link.get("href")) for link in _objects(entity.get("links")) if link.get("rel") == "about"), None
    )
    for inner in _objects(entity.get("entities")):
        if "abuse" in [str(r).lower() for r in _list(inner.get("roles"))]:
            abuse = vcard(inner.get("vcardArray"))
            data.registrar_abuse_email = _first_text(abuse, "email")
            phone = _first_text(abuse, "tel")
            data.registrar_abuse_phone = phone.removeprefix("tel:") if phone else None


def _registrant(data: DomainData, entity: dict[str, Any], card: dict[str, list[Any]], redacted_paths: set[str]) -> None:
    organization = _first_text(card, "org")
    if "Registrant Organization" in redacted_paths or is_redacted(organization):
        data.redacted = sorted(set(data.redacted) | {"Registrant Organization"})
        organization = None
    data.registrant_organization = organization
    country = None
    for values in card.get("adr", []):
        parameters, value = values
        country = clean(parameters.get("cc")) if isinstance(parameters, dict) else None
        if country is None and isinstance(value, list) and len(value) >= 7:
            country = clean(value[6]) if isinstance(value[6], str) else None
    if "Registrant Country" in redacted_paths or is_redacted(country):
        data.redacted = sorted(set(data.redacted) | {"Registrant Country"})
        country = None
    data.registrant_country = country_code(country)
    for remark in _objects(entity.get("remarks")):
        # ICANN's 2019 profile: "REDACTED FOR PRIVACY" remarks on a truncated contact object
        if is_redacted(clean(remark.get("title"))):
            data.redacted = sorted(set(data.redacted) | {"Registrant Contact"})


def _redactions(markers: Any) -> set[str]:
    """The field names of RFC 9537 ``redacted`` markers (``name.type``, else ``name.description``)."""
    names = set()
    for marker in _objects(markers):
        name = marker.get("name")
        label = clean(name.get("type")) or clean(name.get("description")) if isinstance(name, dict) else None
        if label:
            names.add(label)
    return names


def registrar_link(document: dict[str, Any]) -> str | None:
    """The registrar's RDAP URL for the domain: a ``related``/``registration`` link of an RDAP media type
    that is not the answer itself."""
    own = {clean(link.get("href")) for link in _objects(document.get("links")) if link.get("rel") == "self"}
    for link in _objects(document.get("links")):
        href = clean(link.get("href"))
        media = str(link.get("type", "")).split(";")[0].strip().lower()
        related = link.get("rel") in REGISTRAR_RELS and media == RDAP_MEDIA_TYPE
        if related and href and href not in own and urlsplit(href).scheme in ("http", "https"):
            return href
    return None


def vcard(value: Any) -> dict[str, list[Any]]:
    """A jCard (``["vcard", [[name, params, type, value…], …]]``) as {property: [(params, value), …]}."""
    properties: dict[str, list[Any]] = {}
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], list)):
        return properties
    for item in value[1]:
        if isinstance(item, list) and len(item) >= 4 and isinstance(item[0], str):
            properties.setdefault(item[0].lower(), []).append((item[1], item[3] if len(item) == 4 else item[3:]))
    return properties


def _first_text(card: dict[str, list[Any]], name: str) -> str | None:
    for _, value in card.get(name, []):
        text = clean(value) if isinstance(value, str) else None
        if text:
            return text
    return None


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    return (item for item in _list(value) if isinstance(item, dict))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
