"""Day-over-day changes of a zone: the names added and removed between two snapshots, out of core.

A snapshot is the Parquet file of one zone date's delegations (``fqdn``, ``name_servers``), written
beside the raw zone file while it is parsed, in ascending ``fqdn`` order (byte order; no name twice).
Zone files are written in name order, so the snapshot usually is too as it is written; a zone that was
not is sorted afterwards (:func:`sort_snapshot`: sorted runs merged a few at a time, memory bounded by
the runs' batches). Two sorted snapshots are then compared by one merge pass (:func:`changes`): both are
read a batch at a time, and each step compares the names up to the smaller of the two batches' last
names, which both batches hold entirely. Memory is two batches, whatever the zone's size; every name is
read once and hashed once per side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawler.downloaders.files import FILE_PREFIX, discard_download
from crawler.storage import ObjectStore

logger = logging.getLogger(__name__)
#: the snapshot of a zone date, beside its raw file
SNAPSHOT_SUFFIX = ".domains.parquet"
#: schema metadata of a snapshot written in ascending fqdn order (snapshots written before it was kept
#: sorted lack it, and are sorted into a local copy before a diff)
ORDER_METADATA = {b"czds_order": b"fqdn"}
SNAPSHOT_SCHEMA = pa.schema([("fqdn", pa.string()), ("name_servers", pa.list_(pa.string()))], metadata=ORDER_METADATA)
CHANGE_SCHEMA = pa.schema([("fqdn", pa.string()), ("change", pa.string()), ("name_servers", pa.list_(pa.string()))])
_DATE = re.compile(r"^(?P<tld>.+)-(?P<date>\d{4}-\d{2}-\d{2})\.domains\.parquet$")
#: rows of a change batch
ROWS_PER_BATCH = 65_536
ROWS_PER_GROUP = 200_000
#: rows of each snapshot's batches read by the merge, two at a time (measured on a 4.7 M-name zone:
#: 32 Ki rows keep Arrow's peak at 50 MB, from 95 MB with 200 k rows, at the same speed)
READ_ROWS = 32_768
#: sorting an unsorted snapshot: rows of a sorted run, rows per batch read from a run, runs merged at once
SORT_RUN_ROWS = 250_000
SORT_READ_ROWS = 16_384
SORT_FAN_IN = 16


class NotSorted(ValueError):
    """A snapshot's names are not in strictly ascending order."""


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


def _temporary(directory: str, kind: str) -> str:
    """A new file name in ``directory`` that a later run removes if this one is killed."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return os.path.join(directory, f"{FILE_PREFIX}{kind}-{uuid.uuid4().hex}.parquet")


class SnapshotWriter:
    """Writes a zone date's delegations to a local Parquet file as they are parsed, in row groups of
    ``ROWS_PER_GROUP`` (the parser's tables are small; one row group each would compress poorly), and
    checks their order: :meth:`close` sorts the file when the zone was not in name order."""

    def __init__(self, path: str, spill_directory: str | None = None) -> None:
        self.path = path
        self.spill_directory = spill_directory or os.path.dirname(os.path.abspath(path))
        # no dictionaries: names are unique (a dictionary costs a hash per name and is dropped), and zstd
        # packs the name servers as well without one; no statistics: a snapshot is only read through
        # (measured: half the CPU, a 23 % smaller file)
        self.writer = pq.ParquetWriter(
            path, SNAPSHOT_SCHEMA, compression="zstd", use_dictionary=False, write_statistics=False
        )
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.in_order = True
        self.last: str | None = None

    def write(self, table: pa.Table) -> None:
        table = table.select(SNAPSHOT_SCHEMA.names).cast(SNAPSHOT_SCHEMA)
        if not table.num_rows:
            return
        if self.in_order:
            names = table.column("fqdn").combine_chunks()
            self.in_order = ascending(names, self.last)
            self.last = names[len(names) - 1].as_py()
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROWS_PER_GROUP)
        self.pending, self.rows = [], 0

    def abort(self) -> None:
        """Close the file as it is (a zone that failed: the snapshot is not kept)."""
        self.pending = []
        self.writer.close()

    def close(self) -> None:
        self._flush()
        self.writer.close()
        if not self.in_order:
            logger.info("the zone's names were not in order: sorting its snapshot %s", self.path)
            sort_snapshot(self.path, self.spill_directory)


def ascending(names: pa.Array, after: str | None = None) -> bool:
    """Whether ``names`` are strictly ascending (byte order), and all above ``after``."""
    if not len(names):
        return True
    if names.null_count or (after is not None and not names[0].as_py() > after):
        return False
    if len(names) == 1:
        return True
    return bool(pc.all(pc.less(names.slice(0, len(names) - 1), names.slice(1))).as_py())


def is_sorted_snapshot(path: str) -> bool:
    """Whether a snapshot says it was written in name order."""
    metadata = pq.read_schema(path).metadata or {}
    return all(metadata.get(key) == value for key, value in ORDER_METADATA.items())


# -- sorting a snapshot out of core ---------------------------------------------------------------------


def _last_name(table: pa.Table) -> str:
    return table.column("fqdn")[table.num_rows - 1].as_py()


def _count_at_most(names: pa.Array | pa.ChunkedArray, bound: str) -> int:
    """How many of the ascending ``names`` are ≤ ``bound`` (a binary search)."""
    low, high = 0, len(names)
    while low < high:
        middle = (low + high) // 2
        if names[middle].as_py() <= bound:
            low = middle + 1
        else:
            high = middle
    return low


def merge_sorted(runs: list[Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """The rows of tables sorted by ``fqdn`` (each run ascending), as ascending tables; a name in
    several runs or twice in one is kept once (its first row)."""
    buffers: list[pa.Table | None] = [None] * len(runs)
    last: str | None = None
    while True:
        for index, run in enumerate(runs):
            while buffers[index] is None or not buffers[index].num_rows:
                buffers[index] = next(run, None)
                if buffers[index] is None:
                    break
        live = [(index, buffer) for index, buffer in enumerate(buffers) if buffer is not None]
        if not live:
            return
        # every run holds all of its names up to the smallest last name among the buffers
        bound = min(_last_name(buffer) for _, buffer in live)
        window = []
        for index, buffer in live:
            cut = _count_at_most(buffer.column("fqdn"), bound)
            window.append(buffer.slice(0, cut))
            buffers[index] = buffer.slice(cut)
        table = pa.concat_tables(window).combine_chunks().sort_by("fqdn")
        names = table.column("fqdn").combine_chunks()
        first = pc.not_equal(names.slice(1), names.slice(0, len(names) - 1)) if len(names) > 1 else None
        keep = pa.concat_arrays(
            [pa.array([last is None or names[0].as_py() != last]), *([first] if first is not None else [])]
        )
        table = table.filter(keep)
        if table.num_rows:
            last = _last_name(table)
            yield table


def _read(path: str, rows: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    with pq.ParquetFile(path, pre_buffer=False) as file:
        for batch in file.iter_batches(batch_size=rows, columns=columns, use_threads=False):
            yield pa.Table.from_batches([batch])


def _write(path: str, tables: Iterable[pa.Table], row_group_rows: int, compression: str) -> None:
    with pq.ParquetWriter(path, SNAPSHOT_SCHEMA, compression=compression, use_dictionary=False) as writer:
        for table in tables:
            writer.write_table(table.cast(SNAPSHOT_SCHEMA), row_group_size=row_group_rows)


def sort_snapshot(path: str, directory: str, target: str | None = None) -> None:
    """Write the snapshot ``path`` in ascending name order (a name twice: its first row) to ``target``
    (default: in its place). Out of core: sorted runs of ``SORT_RUN_ROWS`` rows, merged ``SORT_FAN_IN``
    at a time, so memory is bounded by the runs' batches whatever the size."""
    runs: list[str] = []
    try:
        for table in _read(path, SORT_RUN_ROWS):
            run = _temporary(directory, "run")
            runs.append(run)
            _write(run, [table.sort_by("fqdn")], SORT_READ_ROWS, "lz4")
        while len(runs) > SORT_FAN_IN:
            merged: list[str] = []
            for start in range(0, len(runs), SORT_FAN_IN):
                group = runs[start : start + SORT_FAN_IN]
                run = _temporary(directory, "run")
                merged.append(run)
                _write(run, merge_sorted([_read(r, SORT_READ_ROWS) for r in group]), SORT_READ_ROWS, "lz4")
                for done in group:
                    discard_download(done)
            runs = merged
        result = _temporary(directory, "sorted")
        try:
            _write(result, merge_sorted([_read(r, SORT_READ_ROWS) for r in runs]), ROWS_PER_GROUP, "zstd")
            os.replace(result, target or path)
        except BaseException:
            discard_download(result)
            raise
    finally:
        for run in runs:
            discard_download(run)


# -- the diff -------------------------------------------------------------------------------------------


def _ordered(path: str) -> Iterator[pa.Table]:
    """A sorted snapshot's batches, checked to be strictly ascending (a diff of unsorted input would
    report wrong changes: it fails instead)."""
    last: str | None = None
    for table in _read(path, READ_ROWS, list(SNAPSHOT_SCHEMA.names)):
        if not table.num_rows:
            continue
        names = table.column("fqdn").combine_chunks()
        if not ascending(names, last):
            raise NotSorted(f"{path}: names not in ascending order after {last!r}")
        last = names[len(names) - 1].as_py()
        yield table


def _changed(table: pa.Table, present: pa.Array, change: str) -> pa.Table:
    rows = table.filter(pc.invert(present))
    return pa.table(
        {
            "fqdn": rows.column("fqdn"),
            "change": pa.repeat(pa.scalar(change, pa.string()), rows.num_rows),
            "name_servers": rows.column("name_servers"),
        },
        schema=CHANGE_SCHEMA,
    )


def diff_sorted(new: Iterator[pa.Table], old: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Tables of (fqdn, change, name_servers) from two ascending streams of (fqdn, name_servers):
    ``added`` (in ``new`` only, its new name servers) and ``removed`` (in ``old`` only, its last ones)."""
    new_rows: pa.Table | None = None
    old_rows: pa.Table | None = None
    while True:
        if new_rows is None or not new_rows.num_rows:
            new_rows = next(new, None)
        if old_rows is None or not old_rows.num_rows:
            old_rows = next(old, None)
        if new_rows is None and old_rows is None:
            return
        if old_rows is None:
            assert new_rows is not None
            yield _changed(new_rows, pa.repeat(False, new_rows.num_rows), "added")
            new_rows = None
            continue
        if new_rows is None:
            yield _changed(old_rows, pa.repeat(False, old_rows.num_rows), "removed")
            old_rows = None
            continue
        # both hold every name up to the smaller of their last names: compare those, keep the rest
        bound = min(_last_name(new_rows), _last_name(old_rows))
        new_cut = _count_at_most(new_rows.column("fqdn"), bound)
        old_cut = _count_at_most(old_rows.column("fqdn"), bound)
        new_part, new_rows = new_rows.slice(0, new_cut), new_rows.slice(new_cut)
        old_part, old_rows = old_rows.slice(0, old_cut), old_rows.slice(old_cut)
        new_names = new_part.column("fqdn")
        old_names = old_part.column("fqdn")
        if new_cut == old_cut and pc.all(pc.equal(new_names, old_names)).as_py() is True:
            continue  # the same names: nothing changed here
        added = _changed(new_part, pc.is_in(new_names, value_set=old_names), "added")
        removed = _changed(old_part, pc.is_in(old_names, value_set=new_names), "removed")
        yield (
            pa.concat_tables([added, removed]).sort_by("fqdn")
            if added.num_rows and removed.num_rows
            else (added if added.num_rows else removed)
        )


def _rebatched(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.RecordBatch]:
    """Tables joined into record batches of about ``rows`` rows (the diff's steps give small ones)."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        if not table.num_rows:
            continue
        pending.append(table)
        count += table.num_rows
        if count >= rows:
            yield from pa.concat_tables(pending).combine_chunks().to_batches()
            pending, count = [], 0
    if pending:
        yield from pa.concat_tables(pending).combine_chunks().to_batches()


def changes(new: str, old: str, *, spill_directory: str, rows: int = ROWS_PER_BATCH) -> Iterator[pa.RecordBatch]:
    """Batches of (fqdn, change, name_servers): names in ``new`` and not ``old`` (``added``, with their
    new name servers) and in ``old`` and not ``new`` (``removed``, with their last ones), in name order.

    A snapshot not marked as sorted (written before snapshots were kept sorted) is sorted into a
    temporary copy in ``spill_directory`` first."""
    copies: list[str] = []
    try:
        paths = []
        for path in (new, old):
            if not is_sorted_snapshot(path):
                copy = _temporary(spill_directory, "sorted")
                copies.append(copy)
                sort_snapshot(path, spill_directory, target=copy)
                path = copy
            paths.append(path)
        yield from _rebatched(diff_sorted(_ordered(paths[0]), _ordered(paths[1])), rows)
    finally:
        for copy in copies:
            with contextlib.suppress(OSError):
                os.unlink(copy)
