"""Day-over-day changes of a zone: the names added and removed between two snapshots, out of core.

A snapshot is the Parquet file of one zone date's delegations (``fqdn``, ``name_servers``), written
beside the raw zone file while it is parsed. DuckDB finds the changed names with one full outer join
of the names alone, on their 64-bit hash first (a quarter of the CPU of two anti-joins carrying the name
servers), then joins the few changed names back for their name servers; with a memory limit, spilling
to a local directory beyond it, so memory stays bounded whatever the zone's size.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crawler.storage import ObjectStore

#: the snapshot of a zone date, beside its raw file
logger = logging.getLogger(__name__)
SNAPSHOT_SUFFIX = ".domains.parquet"
SNAPSHOT_SCHEMA = pa.schema([("fqdn", pa.string()), ("name_servers", pa.list_(pa.string()))])
_DATE = re.compile(r"^(?P<tld>.+)-(?P<date>\d{4}-\d{2}-\d{2})\.domains\.parquet$")
ROWS_PER_BATCH = 200_000
ROWS_PER_GROUP = 200_000


def raw_key(tld: str, zone_date: str) -> str:
    """Where a zone file is kept raw: ``zones/<tld>/<tld>-<YYYY-MM-DD>.zone.gz``."""
    return f"zones/{tld}/{tld}-{zone_date}.zone.gz"


def snapshot_key(tld: str, zone_date: str) -> str:
    return f"zones/{tld}/{tld}-{zone_date}{SNAPSHOT_SUFFIX}"


def previous_snapshot(store: ObjectStore, tld: str, zone_date: str) -> tuple[str, str] | None:
    """(key, zone date) of the latest snapshot of ``tld`` before ``zone_date``, if any."""
    best: tuple[str, str] | None = None
    for info in store.list(f"zones/{tld}/"):
        match = _DATE.match(info.key.rsplit("/", 1)[-1])
        if match and match["tld"] == tld and match["date"] < zone_date and (best is None or match["date"] > best[1]):
            best = (info.key, match["date"])
    return best


def fetch_local(store: ObjectStore, key: str, directory: str) -> tuple[str, bool]:
    """A local path of a stored object, streamed to ``directory`` when the store is remote; and
    whether the caller must delete it."""
    local = store.local_path(key)
    if local is not None:
        return local, False
    filesystem, base = store.arrow_filesystem()
    target = Path(directory) / (key.replace("/", "_") + ".part")
    with filesystem.open_input_stream(f"{base}/{key}") as source, open(target, "wb") as sink:
        while chunk := source.read(4 << 20):
            sink.write(chunk)
    return str(target), True


class SnapshotWriter:
    """Writes a zone date's delegations to a local Parquet file as they are parsed, in row groups of
    ``ROWS_PER_GROUP`` (the parser's tables are small; one row group each would compress poorly)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writer = pq.ParquetWriter(path, SNAPSHOT_SCHEMA, compression="zstd")
        self.pending: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.pending.append(table.select(SNAPSHOT_SCHEMA.names).cast(SNAPSHOT_SCHEMA))
        self.rows += table.num_rows
        if self.rows >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROWS_PER_GROUP)
        self.pending, self.rows = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()


def changes(new: str, old: str, *, memory_mb: int, spill_directory: str, attempts: int = 3) -> Iterator[pa.RecordBatch]:
    """Batches of (fqdn, change, name_servers): names in ``new`` and not ``old`` (``added``, with their
    new name servers) and in ``old`` and not ``new`` (``removed``, with their last ones).

    DuckDB's join spills, but not without limit: what it needs in memory grows with the zone (measured:
    4.7 M names join in 128 MB; 23.7 M need 256 MB). When it runs out, the diff runs again with twice the
    memory, up to ``attempts`` times (a retry may repeat rows already yielded: they have the same keys,
    and the views keep one)."""
    import duckdb  # only a run that diffs pays for loading it

    for attempt in range(attempts):
        try:
            yield from _changes(new, old, memory_mb << attempt, spill_directory)
            return
        except duckdb.OutOfMemoryException:
            if attempt == attempts - 1:
                raise
            logger.warning(
                "the diff ran out of %d MB; again with %d MB", memory_mb << attempt, memory_mb << (attempt + 1)
            )


def _changes(new: str, old: str, memory_mb: int, spill_directory: str) -> Iterator[pa.RecordBatch]:
    import duckdb

    connection = duckdb.connect(config={"threads": 1, "memory_limit": f"{memory_mb}MB"})
    try:
        connection.execute("SET temp_directory = ?", [spill_directory])
        connection.execute("SET preserve_insertion_order = false")
        reader = connection.sql(
            """
            WITH changed AS (
                SELECT coalesce(n.fqdn, o.fqdn) AS fqdn, o.fqdn IS NULL AS added
                FROM (SELECT fqdn, hash(fqdn) AS h FROM read_parquet($new)) AS n
                FULL JOIN (SELECT fqdn, hash(fqdn) AS h FROM read_parquet($old)) AS o
                  ON n.h = o.h AND n.fqdn = o.fqdn
                WHERE n.fqdn IS NULL OR o.fqdn IS NULL
            )
            SELECT c.fqdn, 'added' AS change, n.name_servers
            FROM changed AS c JOIN read_parquet($new) AS n ON n.fqdn = c.fqdn WHERE c.added
            UNION ALL
            SELECT c.fqdn, 'removed' AS change, o.name_servers
            FROM changed AS c JOIN read_parquet($old) AS o ON o.fqdn = c.fqdn WHERE NOT c.added
            """,
            params={"new": new, "old": old},
        ).to_arrow_reader(ROWS_PER_BATCH)
        yield from reader
    finally:
        connection.close()
