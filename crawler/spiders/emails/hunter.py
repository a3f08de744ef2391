"""Hunter's ``/v2/domain-search`` answer, read into plain values (no network here).

Shape (Hunter's own wire fixture): ``data{domain, disposable, webmail, accept_all, pattern, organization,
emails[{value, type, confidence, first_name, last_name, verification{date, status}, ...}]}``,
``meta{results, limit, offset}``. Errors: ``{"errors": [{"id", "code", "details"}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from crawler.spiders.emails.patterns import TEMPLATES


@dataclass(frozen=True)
class HunterEmail:
    address: str
    first_name: str | None
    last_name: str | None
    confidence: int | None
    verification: str | None
    type: str | None

    @property
    def name(self) -> str | None:
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) if len(parts) == 2 else None


@dataclass
class HunterDomain:
    """What Hunter's pages said of a domain, accumulated page by page."""

    pattern: str | None = None
    organization: str | None = None
    webmail: bool | None = None
    disposable: bool | None = None
    accept_all: bool | None = None
    results: int = 0
    emails: list[HunterEmail] = field(default_factory=list)
    pages: int = 0


def search_url(api: str, domain: str, limit: int, offset: int) -> str:
    base = api if api.endswith("/") else api + "/"
    return f"{base}v2/domain-search?" + urlencode({"domain": domain, "limit": limit, "offset": offset})


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def read_page(doc: Any, into: HunterDomain) -> int:
    """Add one page to ``into``; the number of results Hunter has in all. ValueError on another shape."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise ValueError("not a domain-search answer (no data object)")
    data, meta = doc["data"], doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
    emails = data.get("emails")
    if not isinstance(emails, list):
        raise ValueError("data.emails is not a list")
    pattern = _text(data.get("pattern"))
    into.pattern = pattern if pattern in TEMPLATES else into.pattern or pattern
    into.organization = _text(data.get("organization")) or into.organization
    for name in ("webmail", "disposable", "accept_all"):
        if (flag := _flag(data.get(name))) is not None:
            setattr(into, name, flag)
    for entry in emails:
        if not isinstance(entry, dict) or not _text(entry.get("value")):
            continue
        verification = entry.get("verification") if isinstance(entry.get("verification"), dict) else {}
        confidence = entry.get("confidence")
        into.emails.append(
            HunterEmail(
                address=entry["value"].strip().lower(),
                first_name=_text(entry.get("first_name")),
                last_name=_text(entry.get("last_name")),
                confidence=confidence if isinstance(confidence, int) and not isinstance(confidence, bool) else None,
                verification=_text(verification.get("status")),
                type=_text(entry.get("type")),
            )
        )
    into.pages += 1
    results = meta.get("results")
    into.results = results if isinstance(results, int) and not isinstance(results, bool) else len(into.emails)
    return into.results


def error_details(doc: Any) -> str:
    """Hunter's error text (``errors[0].details``), bounded; '' when the body has none."""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("details") or errors[0].get("id") or "")[:200]
    return ""
