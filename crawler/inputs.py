"""Inputs taken from stored data: the domains and the people that earlier crawls stored.

A source that looks things up for domains or people (``-a from=<source or namespace>``) reads them
here, without knowing which source stored them: a record type declares which of its columns name a
domain (:attr:`~crawler.items.base.Record.domain_columns`, optionally narrowed by
:attr:`~crawler.items.base.Record.domain_filter`) and which pairs of columns are a person's name and
email address (:attr:`~crawler.items.base.Record.people_columns`). The values come from the latest
record of every key (the namespace's view), streamed in chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import getaddresses
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from scrapy.exceptions import UsageError

from crawler.config import IngestionConfig
from crawler.items import Record

__all__ = ["record_types", "registrable_domain", "stored_domains", "stored_people"]

CHUNK_ROWS = 10_000


def record_types(selector: str) -> list[type[Record]]:
    """The record types ``selector`` names: every namespace of a source, or one namespace."""
    from crawler.sources import all_sources

    sources = all_sources()
    if selector in sources:
        return list(sources[selector].records)
    if selector in Record.registry:
        return [Record.registry[selector]]
    known = sorted({*sources, *Record.registry})
    raise UsageError(f"from={selector!r}: not a source or namespace; choose from {', '.join(known)}")


@cache
def _extractor() -> Any:
    import tldextract

    # the Public Suffix List snapshot bundled with the library: no download at run time
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def registrable_domain(value: str) -> str | None:
    """The registrable domain (``example.co.uk``) that a URL, host name, email address or domain
    names; None when it names none (an IP address, a bare word, a private suffix alone)."""
    value = value.strip()
    if not value:
        return None
    if "@" in value and "://" not in value:
        value = value.rsplit("@", 1)[1]
    elif "://" in value or value.startswith("//"):
        try:
            value = urlsplit(value if "://" in value else "http:" + value).hostname or ""
        except ValueError:
            return None
    else:
        value = value.split("/", 1)[0].split(":", 1)[0]
    parts = _extractor()(value.strip(".").lower())
    domain = parts.top_domain_under_public_suffix
    return domain or None


def _connect(settings: Any) -> Any:
    from crawler.query.views import connect
    from crawler.storage import open_store

    return connect(open_store(IngestionConfig.from_settings(settings).storage_uri))


def _rows(con: Any, sql: str) -> Iterator[tuple[Any, ...]]:
    cursor = con.execute(sql)
    while rows := cursor.fetchmany(CHUNK_ROWS):
        yield from rows


def _column(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stored_domains(settings: Any, selector: str) -> Iterator[str]:
    """The distinct registrable domains in the declared domain columns of what ``selector`` stored."""
    types = [t for t in record_types(selector) if t.domain_columns]
    if not types:
        raise UsageError(f"from={selector!r}: its records name no domains")
    con = _connect(settings)
    seen: set[str] = set()
    for record_type in types:
        where = f" AND ({record_type.domain_filter})" if record_type.domain_filter else ""
        for column in record_type.domain_columns:
            sql = (
                f"SELECT DISTINCT {_column(column)} FROM {_column(record_type.table)} "
                f"WHERE {_column(column)} IS NOT NULL{where}"
            )
            for (value,) in _rows(con, sql):
                domain = registrable_domain(str(value))
                if domain is not None and domain not in seen:
                    seen.add(domain)
                    yield domain


def stored_people(settings: Any, selector: str) -> Iterator[tuple[str | None, str]]:
    """(name, email address) pairs in the declared people columns of what ``selector`` stored. An
    address column holding ``Name <address>`` lists is split; its names fill a missing name."""
    types = [t for t in record_types(selector) if t.people_columns]
    if not types:
        raise UsageError(f"from={selector!r}: its records name no people")
    con = _connect(settings)
    for record_type in types:
        for name_column, email_column in record_type.people_columns:
            sql = (
                f"SELECT {_column(name_column)}, {_column(email_column)} FROM {_column(record_type.table)} "
                f"WHERE {_column(email_column)} IS NOT NULL"
            )
            for name, addresses in _rows(con, sql):
                text = str(addresses).strip()
                if "<" not in text and "," not in text and '"' not in text:  # one bare address: most rows
                    if "@" in text and " " not in text:
                        yield (name or None), text.lower()
                    continue
                parsed = [(n, a) for n, a in getaddresses([text]) if "@" in a]
                for parsed_name, address in parsed:
                    yield (name if len(parsed) == 1 and name else parsed_name or None), address.lower()
