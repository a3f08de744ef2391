"""Port-43 WHOIS answers (RFC 3912): decoding, throttle and not-found texts, referrals, and the fields.

The per-registry formats (ICANN's key/value, DENIC, Nominet's indented blocks, JPRS's bracketed fields…)
are read by python-whois (``whois.parser``), chosen after comparing it with asyncwhois and whoisdomain on
the recorded samples (README, "Crawling WHOIS"). This module adds what it leaves out: picking the
domain's own record out of an answer (Verisign's bogus ``Server Name:`` host records before it; a thin
registry answer and the registrar's thick one concatenated), IANA id, abuse contact, DNSSEC, RFC-style
status codes, JPRS's expiry in ``[State]``, and fields withheld as ``REDACTED FOR PRIVACY``.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from whois.exceptions import PywhoisError
from whois.parser import WhoisEntry

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

logger = logging.getLogger(__name__)

#: answers that mean "slow down", in the wording servers use; never a record
THROTTLE_TEXT = re.compile(
    r"limit exceeded|rate limit|try again after|blacklisted|excessive (?:querying|queries|number)|"
    r"maximum (?:query|queries|number of queries|daily)|too many (?:requests|queries|connections)|"
    r"query rate|quota exceeded|temporarily (?:denied|blocked)|access (?:denied|restricted).{0,40}(?:rate|limit)",
    re.IGNORECASE,
)
_AFTER = re.compile(
    r"(?:try again |retry )?after:?\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\b",
    re.IGNORECASE,
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the answers of a registry that has no such domain (a tombstone when it was stored before)
NOT_FOUND_TEXT = re.compile(
    r"^\s*(?:no match(?:es)? for|not found|no data found|no entries found|domain not found|"
    r"no information available|status:\s*(?:free|available)|the queried object does not exist|"
    r"%% no entries found|no such domain|domain name not known|object does not exist)",
    re.IGNORECASE | re.MULTILINE,
)
_RECORD_START = re.compile(r"^[ \t]*(Domain Name|Server Name):[ \t]*(\S*)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_FIELD = re.compile(r"^[ \t]*([A-Za-z][A-Za-z /&.-]{1,60}?):[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_REFER = re.compile(r"^\s*(?:refer|whois):\s*(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
_JPRS_STATE = re.compile(r"^\[State\]\s+(\S+)\s*\((\d{4}/\d{2}/\d{2})\)", re.MULTILINE)
_JPRS_FIELD = re.compile(r"^(?:[a-z]\.\s*)?\[([^\]]+)\][ \t]*(.*?)[ \t]*$", re.MULTILINE)
_HTML = re.compile(rb"^\s*(?:<!doctype html|<html|<head|<body|<\?xml)", re.IGNORECASE)


class UnreadableAnswer(ValueError):
    """Not a WHOIS answer at all: empty, binary, HTML, or cut off."""


def decode(body: bytes) -> str:
    """The answer as text: UTF-8, else Latin-1 (many ccTLD servers answer in it). Raises
    :class:`UnreadableAnswer` for an empty, binary or HTML body, or one cut off inside the record."""
    if not body.strip():
        raise UnreadableAnswer("empty_answer")
    if _HTML.match(body[:512]):
        raise UnreadableAnswer("html_answer")
    if b"\x00" in body or _control_share(body) > 0.01:
        raise UnreadableAnswer("binary_answer")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
        # Latin-1 decodes anything: a body mostly of high bytes is binary, not a ccTLD's text
        if sum(1 for ch in text if ord(ch) > 0x7F) > len(text) * 0.3:
            raise UnreadableAnswer("not_text") from None
    if _cut_off(text):
        raise UnreadableAnswer("truncated_answer")
    return text.replace("\r\n", "\n")


def _cut_off(text: str) -> bool:
    """An answer whose connection closed inside the record: no final line break, and its last line is
    a field or a fragment, not the end of a sentence (servers end with their terms of use, or a field
    and a line break)."""
    if text.endswith(("\n", "\r")):
        return False
    last = text.rsplit("\n", 1)[-1].strip()
    if not last:
        return False
    return ":" in last or "[" in last or (len(last.split()) < 4 and not last.endswith((".", ")", "<<<")))


def _control_share(body: bytes) -> float:
    controls = sum(1 for byte in body[:4096] if byte < 0x20 and byte not in (0x09, 0x0A, 0x0D))
    return controls / max(len(body[:4096]), 1)


def throttle_wait(text: str) -> float | None:
    """None when the answer is not a throttle notice, else the seconds it asks to wait (0: unsaid)."""
    head = text[:2000]
    if not THROTTLE_TEXT.search(head):
        return None
    # a real record may carry terms of use that mention "high volume" queries: only a short answer
    # without record fields is a notice
    if len(_FIELD.findall(head)) > 6 and re.search(r"^\s*Domain Name:", head, re.IGNORECASE | re.MULTILINE):
        return None
    match = _AFTER.search(head)
    if match is None:
        return 0.0
    return float(match.group(1)) * _UNITS[match.group(2)[0].lower()]


def is_not_found(text: str) -> bool:
    return bool(NOT_FOUND_TEXT.search(text[:4000]))


def referral(text: str) -> str | None:
    """The server IANA's answer for a TLD refers to (``refer:``, else ``whois:``)."""
    for match in _REFER.finditer(text):
        server = clean(match.group(1))
        if server and "://" not in server:
            return server.lower().rstrip(".")
    return None


def domain_records(text: str, domain: str) -> list[str]:
    """The parts of an answer that are about ``domain``, in order: Verisign prints host records
    (``Server Name: GOOGLE.COM.EXAMPLE``) for a bare query before the domain's record, and a client may
    concatenate the thin registry answer and the registrar's thick one. Formats without ``Domain Name:``
    lines (DENIC, Nominet, JPRS) are one record."""
    starts = list(_RECORD_START.finditer(text))
    if not starts:
        return [text]
    records = []
    for index, start in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        kind, name = start.group(1).lower(), start.group(2).lower().rstrip(".")
        if kind == "domain name" and name in ("", domain.lower()):
            records.append(text[start.start() : end])
    return records


def parse_text(domain: str, text: str) -> DomainData:
    """The facts of a port-43 answer about ``domain`` (the registry's record first, filled from any
    registrar record after it). Raises ValueError when it has none."""
    records = domain_records(text, domain)
    if not records:
        raise ValueError(f"no record of {domain} in the answer")
    parsed = [_parse_record(domain, record) for record in records]
    data = parsed[0]
    for other in parsed[1:]:
        data = data.filled_from(other)
    if data.is_empty():
        raise ValueError("the answer names no registrar, date, status or name server")
    return data


def _parse_record(domain: str, text: str) -> DomainData:
    try:
        entry: dict[str, Any] = dict(WhoisEntry.load(domain, text))
    except PywhoisError:
        entry = {}
    except Exception:  # a format python-whois trips on: the fields read below still count
        logger.debug("python-whois could not read the answer for %s", domain, exc_info=True)
        entry = {}
    fields = _fields(text)
    data = DomainData(domain=(_one(entry.get("domain_name")) or domain).lower())
    registrar = _one(entry.get("registrar"))
    data.registrar = re.sub(r"\s*\[Tag = [^\]]*\]\s*$", "", registrar) if registrar else None
    data.registrar_iana_id = _field(fields, "registrar iana id")
    data.registrar_url = _one(entry.get("registrar_url")) or _field(fields, "registrar url")
    data.registrar_abuse_email = _field(fields, "registrar abuse contact email")
    data.registrar_abuse_phone = _field(fields, "registrar abuse contact phone")
    server = _one(entry.get("whois_server")) or _field(fields, "registrar whois server")
    data.registrar_whois_server = server.lower().rstrip(".") if server else None
    data.created = _date(entry.get("creation_date"))
    data.updated = _date(entry.get("updated_date"))
    data.expires = _date(entry.get("expiration_date"))
    data.status = unique([s for s in map(epp_status, _many(entry.get("status"))) if s])
    data.name_servers = unique([n for n in map(host_name, _many(entry.get("name_servers"))) if n])
    data.dnssec = _dnssec(_one(entry.get("dnssec")) or _field(fields, "dnssec"))
    organization = _field(fields, "registrant organization") or _one(entry.get("registrant_org") or entry.get("org"))
    country = _field(fields, "registrant country") or _one(entry.get("country"))
    data.registrant_organization = None if is_redacted(organization) else organization
    data.registrant_country = country_code(country)
    data.redacted = sorted({label.title() for label, value in fields if is_redacted(value)})
    _jprs(text, data)
    return data


def _jprs(text: str, data: DomainData) -> None:
    """JPRS prints the expiry inside ``[State] Connected (2024/03/31)`` and a ``[Lock Status]``."""
    state = _JPRS_STATE.search(text)
    if state is None:
        return
    data.status = unique([state.group(1), *[s for s in data.status if not s.startswith(state.group(1))]])
    data.expires = data.expires or parse_date(state.group(2))
    for label, value in _JPRS_FIELD.findall(text):
        if label == "Lock Status" and value:
            data.status = unique([*data.status, value])
        elif label in ("Registrant", "Organization") and value and not data.registrant_organization:
            data.registrant_organization = value


def _fields(text: str) -> list[tuple[str, str]]:
    return [(label.strip().lower(), value) for label, value in _FIELD.findall(text)]


def _field(fields: list[tuple[str, str]], label: str) -> str | None:
    for name, value in fields:
        if name == label and value:
            return None if is_redacted(value) else value
    return None


def _one(value: Any) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if v), None)
    return clean(value) if isinstance(value, str) else None


def _many(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _date(value: Any) -> Any:
    if isinstance(value, list):
        value = next((v for v in value if v), None)
    return parse_date(value)


def _dnssec(value: str | None) -> bool | None:
    if value is None:
        return None
    text = value.lower()
    if text.startswith(("unsigned", "no", "inactive")):
        return False
    if text.startswith(("signed", "yes", "active")) or "signeddelegation" in text:
        return True
    return None


def wait_text(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
