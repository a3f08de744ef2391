"""Clearbit's company and person answers, in both schemas (the old one and v2), read into plain values.

Clearbit was bought by HubSpot and its free APIs were shut down during 2025: a retired endpoint answers
401, 403, 404 or 410 without Clearbit's own error body. A real "not found" is a 404 whose body is
``{"error": {"type": "unknown_record" | "not_found" | "email_invalid" ...}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

RETIRED_STATUSES = frozenset({401, 403, 404, 410})
_NOT_FOUND_TYPES = frozenset({"unknown_record", "not_found", "email_invalid", "invalid_email", "queued"})


@dataclass
class ClearbitCompany:
    name: str | None = None
    #: the domain is a webmail provider (v2 ``emailProvider``, old ``personal``)
    webmail: bool | None = None
    #: addresses the company publishes on its site (v2 ``site.emailAddresses``)
    addresses: list[str] = field(default_factory=list)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def read_company(doc: Any) -> ClearbitCompany:
    if not isinstance(doc, dict) or not (_text(doc.get("domain")) or _text(doc.get("name"))):
        raise ValueError("not a company answer (no domain or name)")
    site = doc.get("site") if isinstance(doc.get("site"), dict) else {}
    webmail = doc.get("emailProvider", doc.get("personal"))
    addresses = site.get("emailAddresses") if isinstance(site.get("emailAddresses"), list) else []
    return ClearbitCompany(
        name=_text(doc.get("name")),
        webmail=webmail if isinstance(webmail, bool) else None,
        addresses=[a.strip().lower() for a in addresses if isinstance(a, str) and "@" in a],
    )


def read_person(doc: Any) -> tuple[str | None, str]:
    """(full name, address) of a person answer: the old schema, v2, or the combined ``{person, company}``."""
    person = doc.get("person") if isinstance(doc, dict) and isinstance(doc.get("person"), dict) else doc
    if not isinstance(person, dict) or not _text(person.get("email")):
        raise ValueError("not a person answer (no email)")
    name = person.get("name") if isinstance(person.get("name"), dict) else {}
    full = _text(name.get("fullName"))
    if full is None and _text(name.get("givenName")) and _text(name.get("familyName")):
        full = f"{name['givenName'].strip()} {name['familyName'].strip()}"
    return full, person["email"].strip().lower()


def is_not_found(status: int, body: bytes) -> bool:
    """A 404 (or 422) in Clearbit's own error shape: the record is unknown, the endpoint is alive."""
    if status not in (404, 422):
        return False
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = doc.get("error") if isinstance(doc, dict) else None
    return isinstance(error, dict) and error.get("type") in _NOT_FOUND_TYPES
