"""The zone-file namespaces: delegations per zone date, their day-over-day changes, and the files."""

from __future__ import annotations

from datetime import datetime

from crawler.items.base import Record


class ZoneDomain(Record):
    """A name delegated in a zone on a zone date (the date of the zone file's ``Last-Modified``)."""

    namespace = "domains"
    table = "domains"
    key = ("fqdn", "zone_date")
    schema_version = 1
    #: columns that name a domain worth looking up (read by other sources' ``-a from=…``)
    domain_columns = ("fqdn",)

    fqdn: str
    tld: str
    #: YYYY-MM-DD
    zone_date: str
    name_servers: list[str] = []
    #: the zone has a DS record for the name (DNSSEC-signed delegation)
    has_ds: bool = False


class ZoneChange(Record):
    """A name added to or removed from a zone between two consecutive zone dates."""

    namespace = "zone_changes"
    table = "zone_changes"
    key = ("fqdn", "zone_date")
    schema_version = 1
    domain_columns = ("fqdn",)
    #: the rows worth a look-up: newly delegated names
    domain_filter = "change = 'added'"

    fqdn: str
    tld: str
    #: the later zone date (YYYY-MM-DD); the change happened between ``previous_date`` and it
    zone_date: str
    previous_date: str
    #: ``added`` or ``removed``
    change: str
    #: the name servers on ``zone_date`` (added) or on ``previous_date`` (removed)
    name_servers: list[str] = []


class ZoneFile(Record):
    """One downloaded zone file: where its raw copy is, what it held, and how it compares to the last."""

    namespace = "zone_files"
    table = "zone_files"
    key = ("tld", "zone_date")
    schema_version = 1
    version_column = "last_modified"

    tld: str
    zone_date: str
    last_modified: datetime
    url: str
    #: the raw gzip file's key in the object store, and its size
    raw_key: str
    gzip_bytes: int
    unpacked_bytes: int
    #: ``registry`` (one record per tab-separated line) or ``rfc1035``
    syntax: str
    records: int
    domains: int
    signed_domains: int
    #: records per type (lowercase mnemonic)
    record_types: dict[str, int] = {}
    malformed_lines: int = 0
    previous_date: str | None = None
    added: int | None = None
    removed: int | None = None
