"""Read a gzip master file (a zone file) fast, in bounded memory, as Arrow tables of delegations.

Two syntaxes:

* the registry format CZDS serves (one record per line, five tab-separated fields, lowercase absolute
  names, no directives): read by pyarrow's CSV reader over an ISA-L gzip stream (``bench/czds.py``
  measures it against a Python loop, DuckDB and dnspython);
* any other RFC 1035 master file ($ORIGIN, $TTL, ``@``, omitted owners, parentheses, comments, quoted
  strings, escapes): a tokenizer written here (:func:`master_file_records`), checked against dnspython.

:func:`read_zone` sniffs which one a file is and yields tables of ``owner``, ``type``, ``rdata``; a
:class:`Delegations` turns them into one row per delegated name (its name servers, whether it has a
DS record) and counts every record type. Records of one owner must be adjacent (master files are
written owner by owner); the last owner of a table is carried into the next.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
from isal import igzip

#: the columns of a record table
COLUMNS = ("owner", "type", "rdata")
REGISTRY_FIELDS = ("owner", "ttl", "class", "type", "rdata")
#: bytes of decompressed text per block of the CSV reader (one Arrow table per block)
BLOCK_BYTES = 1 << 20
#: blocks the CSV reader may read ahead of the tables taken from it. Arrow's streaming reader reads up
#: to 32 blocks ahead on its own I/O thread (a fixed queue), which held ~35 MB of decompressed text;
#: :class:`ReadaheadGate` holds its reads back instead
READ_AHEAD_BLOCKS = 3
#: how long a read held back waits while the taker waits for a table before it goes through anyway
STALL_SECONDS = 0.05
#: records per table of the RFC 1035 reader
RFC1035_BATCH = 200_000
SNIFF_BYTES = 64 * 1024
READ_CHUNK = 4 << 20


@dataclass
class ZoneStats:
    """What was read: the syntax, records per type, delegations, signed delegations, bad lines."""

    syntax: str = ""
    records: int = 0
    types: Counter[str] = field(default_factory=Counter)
    domains: int = 0
    signed: int = 0
    malformed: int = 0
    #: the file's size unpacked, once it was read to its end
    unpacked_bytes: int = 0
    #: the first malformed lines (a bounded sample for the dead letter)
    samples: list[str] = field(default_factory=list)

    def bad_line(self, text: str) -> None:
        self.malformed += 1
        if len(self.samples) < 5:
            self.samples.append(text[:200])


def open_gzip(path: str) -> IO[bytes]:
    """The decompressed stream of a gzip file (ISA-L: several times zlib's speed)."""
    return igzip.open(path, "rb")  # type: ignore[return-value]


def verify_gzip(path: str) -> int:
    """Decompress the whole file and return its size unpacked; raises ``EOFError`` (cut short) or
    ``OSError``/``ValueError`` (corrupt) unless every gzip member ends with a valid checksum."""
    size = 0
    with open_gzip(path) as stream:
        while chunk := stream.read(READ_CHUNK):
            size += len(chunk)
    return size


def read_zone(path: str, origin: str, stats: ZoneStats) -> Iterator[pa.Table]:
    """Tables of (owner, type, rdata) of a gzip master file; ``origin`` (``com.``) is the zone's name.

    The file is read to its end, which checks the gzip stream in the same pass (:func:`verify_gzip`
    needs none before): a stream cut short raises ``EOFError``, a bad checksum or corrupt data
    ``OSError``/``ValueError``, possibly after tables were yielded. ``stats.unpacked_bytes`` is set
    once the stream ended cleanly."""
    with open_gzip(path) as stream:
        head = stream.read(SNIFF_BYTES)
    if is_registry_format(head):
        stats.syntax = "registry"
        yield from _registry_tables(path, stats)
    else:
        stats.syntax = "rfc1035"
        yield from _rfc1035_tables(path, origin, stats)


def is_registry_format(head: bytes) -> bool:
    """Whether the first lines are registry lines: five tab-separated fields, an absolute owner."""
    lines = head.split(b"\n")[:-1] or head.split(b"\n")
    lines = [line for line in lines[:200] if line.strip()]
    if not lines:
        return True
    for line in lines:
        parts = line.split(b"\t")
        if len(parts) != 5 or not parts[0].endswith(b".") or line[:1] in (b"$", b";", b" ", b"\t"):
            return False
        if b"(" in parts[4] or b";" in parts[4]:
            return False
    return True


class ReadaheadGate:
    """A file whose ``read`` waits while ``limit`` blocks are read ahead of the tables taken, unless the
    taker waits for one.

    Arrow's CSV reader reads the file on a background thread into a queue of 32 blocks; here its reads
    wait instead (in that thread, not holding the GIL) while enough is read ahead. A table needs its
    block and usually the next one (a line crosses the boundary), but a block may give no table (blank
    lines) or a line may span blocks: a read held back while the taker has waited ``STALL_SECONDS`` for
    a table (:meth:`wanted`) with none coming goes through, so the reader never stalls for long."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.reads = 0
        self.taken = 0
        self.waiting = False
        self.released = False
        self.condition = threading.Condition()

    def read(self, size: int = -1) -> bytes:
        with self.condition:
            while not self.released and self.reads - self.taken >= self.limit:
                taken = self.taken
                if not self.waiting:
                    self.condition.wait()  # the taker holds a table: it asks for the next one later
                elif not self.condition.wait(STALL_SECONDS) and self.waiting and self.taken == taken:
                    break  # the taker waits and no table came: its table needs this read
            self.reads += 1
        return self.stream.read(size)

    def wanted(self) -> None:
        """The taker waits for the next table: reads go through until it has it."""
        with self.condition:
            self.waiting = True
            self.condition.notify_all()

    def took(self) -> None:
        with self.condition:
            self.waiting = False
            self.taken += 1
            self.condition.notify_all()

    def release(self) -> None:
        """Let every read through (the reader is being dropped: it must not wait for a taker)."""
        with self.condition:
            self.released = True
            self.condition.notify_all()

    @property
    def closed(self) -> bool:
        return self.stream.closed

    def close(self) -> None:
        self.release()
        self.stream.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _registry_tables(path: str, stats: ZoneStats) -> Iterator[pa.Table]:
    def invalid(row: csv.InvalidRow) -> str:
        stats.bad_line(row.text or "")
        return "skip"

    stream = open_gzip(path)
    gate = ReadaheadGate(stream, READ_AHEAD_BLOCKS)
    reader = csv.open_csv(
        gate,
        read_options=csv.ReadOptions(column_names=REGISTRY_FIELDS, block_size=BLOCK_BYTES, use_threads=False),
        parse_options=csv.ParseOptions(
            delimiter="\t",
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
            invalid_row_handler=invalid,
        ),
        convert_options=csv.ConvertOptions(
            # the type column dictionary-encoded: a handful of values, counted and matched by index
            column_types={
                **{name: pa.string() for name in REGISTRY_FIELDS},
                "type": pa.dictionary(pa.int32(), pa.string()),
            },
            include_columns=list(COLUMNS),
        ),
    )
    try:
        while True:
            gate.wanted()
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            gate.took()
            yield pa.Table.from_batches([batch])
        # the reader read to the end, where the gzip trailer (length, CRC) was checked
        stats.unpacked_bytes = stream.tell()
    finally:
        gate.release()
        with contextlib.suppress(Exception):
            reader.close()
        stream.close()


# -- RFC 1035 master files -------------------------------------------------------------------------

_TTL = re.compile(r"^(?:\d+[smhdwSMHDW]?)+$")
_CLASSES = {"in", "ch", "hs", "cs", "none", "any"}
_CLASS = re.compile(r"^class\d+$", re.IGNORECASE)


def _is_ttl(token: str) -> bool:
    return bool(_TTL.match(token))


def _is_class(token: str) -> bool:
    return token.lower() in _CLASSES or bool(_CLASS.match(token))


def _tokens(line: str) -> tuple[list[str], int]:
    """The tokens of one line (quoted strings kept with their quotes, escapes kept as written) and the
    change in parenthesis depth; a comment ends the line."""
    tokens: list[str] = []
    depth = 0
    i, n = 0, len(line)
    while i < n:
        char = line[i]
        if char in " \t\r\n":
            i += 1
        elif char == ";":
            break
        elif char == "(":
            depth += 1
            i += 1
        elif char == ")":
            depth -= 1
            i += 1
        elif char == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            tokens.append(line[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in ' \t\r\n;()"':
                j += 2 if line[j] == "\\" else 1
            tokens.append(line[i:j])
            i = j
    return tokens, depth


def _entries(lines: Iterable[str]) -> Iterator[tuple[bool, list[str], str]]:
    """Logical entries: (owner omitted, tokens, the text), parenthesized continuations joined."""
    pending: list[str] = []
    omitted = False
    depth = 0
    text = ""
    for line in lines:
        tokens, change = _tokens(line)
        if depth == 0:
            if not tokens and change == 0:
                continue
            omitted = line[:1] in (" ", "\t")
            pending, text = [], line
        else:
            text += " " + line.strip()
        pending += tokens
        depth += change
        if depth <= 0:
            depth = 0
            if pending:
                yield omitted, pending, text
    if pending and depth > 0:
        yield omitted, pending, text  # an unclosed parenthesis at the end: take what is there


def absolute(name: str, origin: str) -> str:
    """A name made absolute against the origin, lowercase (``@`` is the origin itself)."""
    if name == "@":
        return origin
    if name.endswith(".") and not name.endswith("\\."):
        return name.lower()
    return (name + "." + origin if origin != "." else name + ".").lower()


def master_file_records(lines: Iterable[str], origin: str, stats: ZoneStats) -> Iterator[tuple[str, str, str]]:
    """(owner, type, rdata) of each record of an RFC 1035 master file; names absolute and lowercase,
    types lowercase; NS and DS rdata made absolute where it is a name."""
    origin = origin.lower()
    owner: str | None = None
    for omitted, tokens, text in _entries(lines):
        head = tokens[0]
        if head.startswith("$"):
            directive = head.upper()
            if directive == "$ORIGIN" and len(tokens) > 1:
                origin = absolute(tokens[1], origin)
            elif directive == "$TTL" and len(tokens) > 1 and _is_ttl(tokens[1]):
                pass  # TTLs are not kept
            else:  # $INCLUDE, $GENERATE: not followed (a file names no other file of ours)
                stats.bad_line(text)
            continue
        rest = tokens if omitted else tokens[1:]
        if not omitted:
            owner = absolute(head, origin)
        while rest and (_is_ttl(rest[0]) or _is_class(rest[0])):
            rest = rest[1:]
        if owner is None or not rest:
            stats.bad_line(text)
            continue
        kind = rest[0].lower()
        data = rest[1:]
        if kind in ("ns", "cname", "dname", "ptr") and len(data) == 1:
            data = [absolute(data[0], origin)]
        yield owner, kind, " ".join(data)


def _rfc1035_tables(path: str, origin: str, stats: ZoneStats) -> Iterator[pa.Table]:
    with open_gzip(path) as stream:
        lines = (raw.decode("utf-8", "replace") for raw in stream)
        columns: tuple[list[str], list[str], list[str]] = ([], [], [])
        for record in master_file_records(lines, origin, stats):
            for column, value in zip(columns, record, strict=True):
                column.append(value)
            if len(columns[0]) >= RFC1035_BATCH:
                yield pa.table(dict(zip(COLUMNS, columns, strict=True)))
                columns = ([], [], [])
        if columns[0]:
            yield pa.table(dict(zip(COLUMNS, columns, strict=True)))
        stats.unpacked_bytes = stream.tell()


# -- delegations -------------------------------------------------------------------------------------

#: the columns of a delegation table
DELEGATION_SCHEMA = pa.schema([("fqdn", pa.string()), ("name_servers", pa.list_(pa.string())), ("has_ds", pa.bool_())])


def _run_starts(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Indices (int64) where a new run of equal values begins (0 first)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    if n <= 1:
        return pa.array(range(n), pa.int64())
    changed = pc.not_equal(values.slice(1), values.slice(0, n - 1))
    later = pc.add(pc.indices_nonzero(changed).cast(pa.int64()), 1)
    return pa.concat_arrays([pa.array([0], pa.int64()), later])


def _name_text(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Names as stored: without the final dot. Already lowercase: the registry format's names are, and
    the RFC 1035 reader folds them."""
    return pc.utf8_rtrim(values, characters=".")


class Delegations:
    """Record tables in, delegation tables out (see the module docstring); counts into ``stats``."""

    def __init__(self, origin: str, stats: ZoneStats) -> None:
        self.origin = origin.lower()
        self.stats = stats
        self.carry: pa.Table | None = None

    def add(self, table: pa.Table) -> pa.Table | None:
        """The delegations complete in this table (None: none yet)."""
        self.stats.records += table.num_rows
        kind = self._kinds(table.column("type"))
        wanted = pc.and_(pc.greater(kind, 0), pc.not_equal(table.column("owner"), self.origin))
        rows = pa.table({"owner": table.column("owner"), "kind": kind, "rdata": table.column("rdata")}).filter(wanted)
        if self.carry is not None:
            rows = pa.concat_tables([self.carry, rows])
            self.carry = None
        if rows.num_rows == 0:
            return None
        # the last owner's run is held back: its records may go on in the next table
        starts = _run_starts(rows.column("owner"))
        tail = starts[len(starts) - 1].as_py()
        self.carry = rows.slice(tail)
        rows = rows.slice(0, tail)
        return self._delegations(rows) if rows.num_rows else None

    def _kinds(self, types: pa.ChunkedArray) -> pa.Array:
        """Per record: 1 for NS, 2 for DS, 0 for any other type; counts every type into the stats. The
        types are dictionary-encoded (a few distinct values), so all of it works on small integers."""
        encoded = types.combine_chunks() if isinstance(types, pa.ChunkedArray) else types
        if not pa.types.is_dictionary(encoded.type):
            encoded = encoded.dictionary_encode()
        names = [str(value).lower() for value in encoded.dictionary.to_pylist()]
        for entry in pc.value_counts(encoded.indices).to_pylist():
            if entry["values"] is not None:
                self.stats.types[names[entry["values"]]] += entry["counts"]
        codes = pa.array([1 if name == "ns" else 2 if name == "ds" else 0 for name in names], pa.int8())
        return pc.fill_null(codes.take(encoded.indices), 0)

    def finish(self) -> pa.Table | None:
        rows, self.carry = self.carry, None
        return self._delegations(rows) if rows is not None and rows.num_rows else None

    def _delegations(self, rows: pa.Table) -> pa.Table | None:
        kinds = rows.column("kind")
        ns = rows.filter(pc.equal(kinds, 1))
        if ns.num_rows == 0:
            return None
        owners = ns.column("owner").combine_chunks()
        starts = _run_starts(owners)
        fqdn = owners.take(starts)
        offsets = pa.concat_arrays([starts.cast(pa.int32()), pa.array([ns.num_rows], pa.int32())])
        servers = pa.ListArray.from_arrays(offsets, _name_text(ns.column("rdata").combine_chunks()))
        signed_owners = rows.filter(pc.equal(kinds, 2)).column("owner")
        has_ds = pc.is_in(fqdn, value_set=signed_owners.combine_chunks())
        table = pa.Table.from_arrays([_name_text(fqdn), servers, has_ds], schema=DELEGATION_SCHEMA)
        self.stats.domains += table.num_rows
        self.stats.signed += pc.sum(has_ds).as_py() or 0
        return table


def delegations(path: str, origin: str, stats: ZoneStats) -> Iterator[pa.Table]:
    """Every delegation of a gzip master file, a table at a time."""
    builder = Delegations(origin, stats)
    for table in read_zone(path, origin, stats):
        found = builder.add(table)
        if found is not None:
            yield found
    last = builder.finish()
    if last is not None:
        yield last


def parse_lines(lines: Iterable[str], origin: str) -> tuple[list[tuple[str, str, str]], ZoneStats]:
    """Every record of master-file text (tests and small files)."""
    stats = ZoneStats(syntax="rfc1035")
    return list(master_file_records(lines, origin, stats)), stats


__all__ = [
    "COLUMNS",
    "DELEGATION_SCHEMA",
    "Delegations",
    "ZoneStats",
    "absolute",
    "delegations",
    "is_registry_format",
    "master_file_records",
    "open_gzip",
    "parse_lines",
    "read_zone",
    "verify_gzip",
]
