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
#: the snapshot file's key-value metadata naming the order of its names (snapshots written before they
#: were kept in order lack it, and are sorted into a local copy before a diff)
ORDER_METADATA_KEY = b"czds_order"
#: names in byte order
BYTE_ORDER = "fqdn"
#: names in byte order of what precedes the zone's suffix (``label:.com``): DNS's canonical order for names
#: one label below the zone, in which ``a.com`` comes before ``a-b.com`` (byte order puts it after)
LABEL_ORDER_PREFIX = "label:"
SNAPSHOT_SCHEMA = pa.schema([("fqdn", pa.string()), ("name_servers", pa.list_(pa.string()))])
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


def order_keys(names: pa.Array, order: str) -> pa.Array | None:
    """What names are compared by in ``order`` (None: a name lacks the order's zone suffix)."""
    if order == BYTE_ORDER:
        return names
    suffix = order.removeprefix(LABEL_ORDER_PREFIX)
    if not pc.all(pc.ends_with(names, suffix)).as_py():
        return None
    return pc.utf8_slice_codeunits(names, 0, -len(suffix))


def snapshot_order(path: str) -> str | None:
    """The order a snapshot's names are in (None: not known to be in any)."""
    value = (pq.read_metadata(path).metadata or {}).get(ORDER_METADATA_KEY)
    return value.decode() if value else None


class SnapshotWriter:
    """Writes a zone date's delegations to a local Parquet file as they are parsed, in row groups of
    ``ROWS_PER_GROUP`` (the parser's tables are small; one row group each would compress poorly), and
    checks their order: byte order, or (with ``zone``) DNS's canonical order for names one label below
    the zone. :meth:`close` records the order the names are in, or sorts the file into byte order when
    they are in neither."""

    def __init__(self, path: str, spill_directory: str | None = None, zone: str | None = None) -> None:
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
        #: the orders the names are in so far, with the last name's key in each
        self.last: dict[str, str | None] = {BYTE_ORDER: None}
        if zone and zone.strip("."):
            self.last[f"{LABEL_ORDER_PREFIX}.{zone.strip('.').lower()}"] = None
        #: the order recorded by :meth:`close` (``BYTE_ORDER`` after a sort)
        self.order: str | None = None

    @property
    def in_order(self) -> bool:
        """Whether the names so far are in one of the orders checked."""
        return bool(self.last)

    def write(self, table: pa.Table) -> None:
        table = table.select(SNAPSHOT_SCHEMA.names).cast(SNAPSHOT_SCHEMA)
        if not table.num_rows:
            return
        if self.last:
            names = table.column("fqdn").combine_chunks()
            for order, last in list(self.last.items()):
                keys = order_keys(names, order)
                if keys is None or not ascending(keys, last):
                    del self.last[order]
                else:
                    self.last[order] = keys[len(keys) - 1].as_py()
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
        if self.last:
            self.order = BYTE_ORDER if BYTE_ORDER in self.last else next(iter(self.last))
            self.writer.add_key_value_metadata({ORDER_METADATA_KEY: self.order.encode()})
            self.writer.close()
            return
        self.writer.close()
        logger.info("the zone's names were not in order: sorting its snapshot %s", self.path)
        sort_snapshot(self.path, self.spill_directory)
        self.order = BYTE_ORDER


def ascending(names: pa.Array, after: str | None = None) -> bool:
    """Whether ``names`` are strictly ascending (byte order), and all above ``after``."""
    if not len(names):
        return True
    if names.null_count or (after is not None and not names[0].as_py() > after):
        return False
    if len(names) == 1:
        return True
    return bool(pc.all(pc.less(names.slice(0, len(names) - 1), names.slice(1))).as_py())


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
    """Write tables in byte order of their names (and say so)."""
    with pq.ParquetWriter(path, SNAPSHOT_SCHEMA, compression=compression, use_dictionary=False) as writer:
        for table in tables:
            writer.write_table(table.select(SNAPSHOT_SCHEMA.names).cast(SNAPSHOT_SCHEMA), row_group_size=row_group_rows)
        writer.add_key_value_metadata({ORDER_METADATA_KEY: BYTE_ORDER.encode()})


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


def _ordered(path: str, order: str = BYTE_ORDER) -> Iterator[pa.Table]:
    """A sorted snapshot's batches with their names' keys in ``order`` (a ``key`` column), checked to be
    strictly ascending (a diff of unsorted input would report wrong changes: it fails instead)."""
    last: str | None = None
    for table in _read(path, READ_ROWS, list(SNAPSHOT_SCHEMA.names)):
        if not table.num_rows:
            continue
        keys = order_keys(table.column("fqdn").combine_chunks(), order)
        if keys is None or not ascending(keys, last):
            raise NotSorted(f"{path}: names not in {order} order after {last!r}")
        last = keys[len(keys) - 1].as_py()
        yield table.append_column("key", keys)


def _changed(table: pa.Table, present: pa.Array, change: str) -> pa.Table:
    """The rows of ``table`` not ``present`` as changes, with their keys."""
    rows = table.filter(pc.invert(present))
    return pa.table(
        {
            "fqdn": rows.column("fqdn"),
            "change": pa.repeat(pa.scalar(change, pa.string()), rows.num_rows),
            "name_servers": rows.column("name_servers"),
            "key": rows.column("key"),
        },
        schema=CHANGE_SCHEMA.append(pa.field("key", pa.string())),
    )


def _last_key(table: pa.Table) -> str:
    return table.column("key")[table.num_rows - 1].as_py()


def diff_sorted(new: Iterator[pa.Table], old: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """Tables of (fqdn, change, name_servers) from two streams of (fqdn, name_servers, key) ascending by
    ``key`` (one key per name, the same in both): ``added`` (in ``new`` only, its new name servers) and
    ``removed`` (in ``old`` only, its last ones)."""
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
            yield _in_order(_changed(new_rows, pa.repeat(False, new_rows.num_rows), "added"))
            new_rows = None
            continue
        if new_rows is None:
            yield _in_order(_changed(old_rows, pa.repeat(False, old_rows.num_rows), "removed"))
            old_rows = None
            continue
        # both hold every name up to the smaller of their last names: compare those, keep the rest
        bound = min(_last_key(new_rows), _last_key(old_rows))
        new_cut = _count_at_most(new_rows.column("key"), bound)
        old_cut = _count_at_most(old_rows.column("key"), bound)
        new_part, new_rows = new_rows.slice(0, new_cut), new_rows.slice(new_cut)
        old_part, old_rows = old_rows.slice(0, old_cut), old_rows.slice(old_cut)
        new_names = new_part.column("key")
        old_names = old_part.column("key")
        if new_cut == old_cut and pc.all(pc.equal(new_names, old_names)).as_py() is True:
            continue  # the same names: nothing changed here
        added = _changed(new_part, pc.is_in(new_names, value_set=old_names), "added")
        removed = _changed(old_part, pc.is_in(old_names, value_set=new_names), "removed")
        yield _in_order(added, removed)


def _in_order(*parts: pa.Table) -> pa.Table:
    """Changes of one step as one table, in the snapshots' order, without their keys."""
    parts = tuple(part for part in parts if part.num_rows) or parts[:1]
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts).sort_by("key")
    return table.select(CHANGE_SCHEMA.names)


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
    new name servers) and in ``old`` and not ``new`` (``removed``, with their last ones).

    Both snapshots are merged in the order they share. One in another order, or in none known (written
    before snapshots were kept in order), is sorted into a temporary copy in byte order first, in
    ``spill_directory``."""
    copies: list[str] = []
    try:
        orders = [snapshot_order(new), snapshot_order(old)]
        order = orders[0] if orders[0] == orders[1] and orders[0] is not None else BYTE_ORDER
        paths = []
        for path, own in zip((new, old), orders, strict=True):
            if own != order:
                copy = _temporary(spill_directory, "sorted")
                copies.append(copy)
                sort_snapshot(path, spill_directory, target=copy)
                path = copy
            paths.append(path)
        yield from _rebatched(diff_sorted(_ordered(paths[0], order), _ordered(paths[1], order)), rows)
    finally:
        for copy in copies:
            with contextlib.suppress(OSError):
                os.unlink(copy)
