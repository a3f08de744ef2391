"""What one answer (RDAP or port 43) says about a domain, before it becomes a record; and the merge of a
registry's answer with its registrar's."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dateutil import parser as date_parser

#: placeholders servers print in place of withheld data (GDPR, RFC 9537 "replacementValue")
REDACTED_TEXT = re.compile(
    r"^(?:redacted(?: for privacy)?|data protected|not disclosed|withheld for privacy|"
    r"gdpr masked|statutory masking enabled|non-public data|privacy protected)\b",
    re.IGNORECASE,
)
#: time zone abbreviations seen in WHOIS answers (JPRS prints JST)
ZONES = {"JST": timezone(timedelta(hours=9)), "UTC": UTC, "GMT": UTC, "Z": UTC}
_DAY_FIRST = re.compile(r"^\d{1,2}[-./ ](?:[A-Za-z]{3}|\d{1,2})[-./ ]\d{4}")


@dataclass
class DomainData:
    """Normalized fields of one answer; ``None``/empty: the answer did not say."""

    domain: str | None = None
    registrar: str | None = None
    registrar_iana_id: str | None = None
    registrar_url: str | None = None
    registrar_abuse_email: str | None = None
    registrar_abuse_phone: str | None = None
    #: where the registrar publishes its own answer (a WHOIS host, or an RDAP URL)
    registrar_whois_server: str | None = None
    registrar_rdap_url: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    expires: datetime | None = None
    status: list[str] = field(default_factory=list)
    name_servers: list[str] = field(default_factory=list)
    dnssec: bool | None = None
    registrant_organization: str | None = None
    registrant_country: str | None = None
    redacted: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when the answer named none of the registration's facts (a banner, a truncated answer)."""
        facts = (self.registrar, self.created, self.updated, self.expires, self.status, self.name_servers)
        return not any(facts)

    def filled_from(self, other: DomainData) -> DomainData:
        """This answer with what it leaves out taken from ``other`` (a registrar's thick answer fills a
        registry's thin one; the registry's own values win)."""
        merged = DomainData(**{f.name: getattr(self, f.name) for f in fields(self)})
        for name in (f.name for f in fields(self)):
            if name == "redacted":
                continue
            if getattr(merged, name) in (None, [], ""):
                setattr(merged, name, getattr(other, name))
        # a field the registry withheld is still withheld unless the registrar gave it
        merged.redacted = sorted(set(self.redacted) | set(other.redacted))
        return merged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DomainData:
        return cls(**values)


def clean(value: Any) -> str | None:
    """A stripped string, or None for anything else or empty."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def is_redacted(value: str | None) -> bool:
    return value is not None and bool(REDACTED_TEXT.match(value.strip()))


def parse_date(value: Any) -> datetime | None:
    """A date as WHOIS and RDAP servers write it, as an aware UTC datetime (None when unreadable).

    ISO 8601 with or without a zone (``-0700``, ``.00Z``), ``dd-mon-yyyy`` (Nominet, legacy registries),
    ``yyyy/mm/dd [hh:mm:ss] (JST)`` (JPRS); a date without a zone is taken as UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = clean(value)
        if text is None:
            return None
        zone = None
        match = re.search(r"\(?\b([A-Z]{1,4})\)?\s*$", text)
        if match and match.group(1) in ZONES:
            zone = ZONES[match.group(1)]
            text = text[: match.start()].strip()
        try:
            parsed = date_parser.parse(text, dayfirst=bool(_DAY_FIRST.match(text)))
        except (ValueError, OverflowError):
            return None
        if parsed.tzinfo is None and zone is not None:
            parsed = parsed.replace(tzinfo=zone)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def epp_status(value: Any) -> str | None:
    """An EPP status in its camelCase form: RDAP's ``client transfer prohibited`` and WHOIS's
    ``clientTransferProhibited https://icann.org/epp#…`` both become ``clientTransferProhibited``;
    a registry's own wording is kept as written."""
    text = clean(value)
    if text is None:
        return None
    text = re.sub(r"\s*\(?https?:\s*//\S*\)?\s*$", "", text).strip()
    words = text.split()
    if len(words) > 1 and all(re.fullmatch(r"[a-z]+", w) for w in words):
        return words[0] + "".join(w.capitalize() for w in words[1:])
    return text or None


def unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def host_name(value: Any) -> str | None:
    """A name server's host name, lower case, without the trailing dot or the glue addresses some
    registries print after it."""
    text = clean(value)
    if text is None:
        return None
    name = text.split()[0].rstrip(".").lower()
    return name if re.fullmatch(r"[a-z0-9_.-]+", name) and "." in name else None


def country_code(value: Any) -> str | None:
    text = clean(value)
    if text is None or is_redacted(text):
        return None
    return text.upper() if re.fullmatch(r"[A-Za-z]{2}", text) else text
