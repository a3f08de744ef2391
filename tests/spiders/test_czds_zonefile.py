"""The zone-file reader: registry lines, RFC 1035 syntax (checked against dnspython), delegations."""

from __future__ import annotations

import gzip
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from crawler.spiders.czds import zonefile
from crawler.spiders.czds.zonefile import ZoneStats, delegations, is_registry_format, parse_lines
from tests.fakes.czds import domain_label, name_servers, write_zone, zone_names

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "zone"

#: RFC 1035 syntax the registry format never uses, written for these tests
MASTER_FILE = r"""; a test zone
$ORIGIN test.
$TTL 1h ; one hour
@   IN  SOA ns1.nic hostmaster.nic. (
        2026112901 ; serial
        7200 3600 1209600 3600 )
    IN  NS  ns1.nic
    NS  ns2.nic.test.
nic NS ns1.nic
ns1.nic 3600 IN A 192.0.2.1
alpha   172800 IN NS ns1.alpha   ; glue below
        172800 IN NS ns.other.example.
        IN DS 12345 8 1 (
              49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE )
ns1.alpha IN A 192.0.2.2
Beta IN 3600 NS NS1.Example.NET.
gamma\.dot NS ns.example.
txt TXT "a ; not a comment" "(" \"quoted\"
$ORIGIN sub.test.
delta NS ns1.delta
$INCLUDE other.zone
"""


def gz(tmp_path: Path, text: str, name: str = "zone.gz") -> str:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    return str(path)


def read_all(path: str, origin: str) -> tuple[list[dict], ZoneStats]:
    stats = ZoneStats()
    rows = [row for table in delegations(path, origin, stats) for row in table.to_pylist()]
    return rows, stats


def test_rfc1035_syntax_is_read():
    records, stats = parse_lines(MASTER_FILE.splitlines(keepends=True), "test.")
    assert records[0][:2] == ("test.", "soa")
    assert ("test.", "ns", "ns1.nic.test.") in records  # an omitted owner, a relative target
    assert ("alpha.test.", "ns", "ns.other.example.") in records  # owner carried to the next line
    assert ("alpha.test.", "ds", "12345 8 1 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE") in records
    assert ("beta.test.", "ns", "ns1.example.net.") in records  # class before TTL, case folded
    assert ("gamma\\.dot.test.", "ns", "ns.example.") in records  # an escaped dot stays in the label
    (txt,) = [r for r in records if r[1] == "txt"]
    assert txt == ("txt.test.", "txt", '"a ; not a comment" "(" \\"quoted\\"')
    assert ("delta.sub.test.", "ns", "ns1.delta.sub.test.") in records  # $ORIGIN changed
    assert stats.malformed == 1 and "$INCLUDE" in stats.samples[0]


def test_rfc1035_delegations(tmp_path):
    rows, stats = read_all(gz(tmp_path, MASTER_FILE), "test.")
    assert stats.syntax == "rfc1035"
    by_name = {row["fqdn"]: row for row in rows}
    assert set(by_name) == {"nic.test", "alpha.test", "beta.test", "gamma\\.dot.test", "delta.sub.test"}
    assert by_name["alpha.test"] == {
        "fqdn": "alpha.test",
        "name_servers": ["ns1.alpha.test", "ns.other.example"],
        "has_ds": True,
    }
    assert by_name["beta.test"]["has_ds"] is False and by_name["beta.test"]["name_servers"] == ["ns1.example.net"]
    assert stats.types["ns"] == 8 and stats.types["a"] == 2 and stats.types["ds"] == 1


def _dnspython_counts(text: str, origin: str) -> Counter:
    dns_zone = pytest.importorskip("dns.zone")
    zone = dns_zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    counts: Counter = Counter()
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            counts[(name.to_text().lower(), dns_zone.dns.rdatatype.to_text(rdataset.rdtype).lower())] += len(rdataset)
    return counts


def test_the_fallback_agrees_with_dnspython_on_the_syntax_sample():
    sample = SAMPLES / "dnspython_tests_example.zone"
    if not sample.exists():
        pytest.skip("../shared/samples is not here")
    # this dnspython release rejects the sample's ECH parameter (a base64 check newer than the sample)
    text = re.sub(r'ech="[^"]*" ?', "", sample.read_text())
    expected = _dnspython_counts(text, "example.")
    records, stats = parse_lines(text.splitlines(keepends=True), "example.")
    # dnspython merges identical records of one owner and type (a set); count distinct ones the same way
    ours = Counter((owner, kind) for owner, kind, _ in dict.fromkeys(records))
    assert stats.malformed == 0
    assert ours == expected


def test_the_fallback_agrees_with_dnspython_on_the_test_zone():
    text = MASTER_FILE.replace("$INCLUDE other.zone\n", "")
    expected = _dnspython_counts(text, "test.")
    records, _ = parse_lines(text.splitlines(keepends=True), "test.")
    assert Counter((owner, kind) for owner, kind, _ in records) == expected


def test_both_syntaxes_give_the_same_delegations(tmp_path):
    registry = write_zone(tmp_path / "r.gz", "example", 3000, day=2, churn=5)
    rfc1035 = write_zone(tmp_path / "m.gz", "example", 3000, day=2, churn=5, syntax="rfc1035")
    rows_r, stats_r = read_all(str(registry), "example.")
    rows_m, stats_m = read_all(str(rfc1035), "example.")
    assert (stats_r.syntax, stats_m.syntax) == ("registry", "rfc1035")
    assert rows_r == rows_m
    expected = [f"{domain_label(i)}.example" for i in zone_names(3000, 2, 5)]
    assert [row["fqdn"] for row in rows_r] == expected
    first = zone_names(3000, 2, 5)[0]
    assert rows_r[0]["name_servers"] == list(name_servers(first))
    assert stats_r.domains == 3000 and stats_r.signed == sum(1 for i in zone_names(3000, 2, 5) if i % 10 == 0)
    assert stats_r.types["soa"] == 1 and stats_r.types["a"] == 30


def test_an_owner_split_across_tables_is_one_delegation(tmp_path, monkeypatch):
    path = str(write_zone(tmp_path / "r.gz", "example", 2000))
    whole, _ = read_all(path, "example.")
    monkeypatch.setattr(zonefile, "BLOCK_BYTES", 1000)  # tables of ~15 lines: owners cut everywhere
    pieces, stats = read_all(path, "example.")
    assert pieces == whole and stats.domains == 2000


def test_registry_detection_and_bad_lines(tmp_path):
    assert is_registry_format(b"com.\t900\tin\tsoa\ta. b. 1 2 3 4 5\nx.com.\t1\tin\tns\tns.x.net.\n")
    assert not is_registry_format(b"$ORIGIN com.\nx NS ns.x.net.\n")
    assert not is_registry_format(b"x.com. 1 IN NS ns.x.net.\n")
    text = "com.\t900\tin\tsoa\ta. b. 1 2 3 4 5\n" + "".join(
        f"d{i}.com.\t172800\tin\tns\tns{i}.example.net.\n" for i in range(300)
    )
    text += "broken line without tabs\nd9.com.\t1\tin\tns\tns.a.\textra\n"
    rows, stats = read_all(gz(tmp_path, text), "com.")
    assert len(rows) == 300 and stats.malformed == 2 and stats.samples[0].startswith("broken")


def test_a_cut_gzip_stream_fails_verification(tmp_path):
    path = write_zone(tmp_path / "r.gz", "example", 5000)
    data = path.read_bytes()
    assert zonefile.verify_gzip(str(path)) > len(data)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError):
        zonefile.verify_gzip(str(path))


def test_tables_have_the_delegation_schema(tmp_path):
    path = str(write_zone(tmp_path / "r.gz", "example", 10))
    tables = list(delegations(path, "example.", ZoneStats()))
    assert all(isinstance(t, pa.Table) and t.schema == zonefile.DELEGATION_SCHEMA for t in tables)
    assert sum(t.num_rows for t in tables) == 10


@pytest.mark.parametrize("syntax", ["registry", "rfc1035"])
def test_the_parse_checks_the_gzip_stream_to_its_end(tmp_path, syntax):
    path = write_zone(tmp_path / "r.gz", "example", 5000, syntax=syntax)
    data = path.read_bytes()
    rows, stats = read_all(str(path), "example.")
    assert len(rows) == 5000 and stats.unpacked_bytes == len(gzip.decompress(data))
    path.write_bytes(data[: len(data) // 2])  # cut short, as a truncated download
    with pytest.raises(EOFError):
        read_all(str(path), "example.")
    corrupt = bytearray(data)
    corrupt[-6] ^= 0x55  # the CRC in the trailer
    path.write_bytes(bytes(corrupt))
    stats = ZoneStats()
    with pytest.raises(OSError):
        for _ in delegations(str(path), "example.", stats):
            pass
    assert stats.unpacked_bytes == 0


def test_the_csv_reader_reads_a_few_blocks_ahead_and_never_stalls(tmp_path, monkeypatch):
    monkeypatch.setattr(zonefile, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(zonefile, "READ_AHEAD_BLOCKS", 2)
    ahead: list[int] = []
    read = zonefile.ReadaheadGate.read

    def counted(gate: zonefile.ReadaheadGate, size: int = -1) -> bytes:
        data = read(gate, size)
        ahead.append(gate.reads - gate.taken)
        return data

    monkeypatch.setattr(zonefile.ReadaheadGate, "read", counted)
    lines = [f"d{i:05}.com.\t172800\tin\tns\tns{i % 7}.example.net.\n" for i in range(3000)]
    # 40 blocks of blank lines give no table: the reader must go on through them
    text = "".join(lines[:1500]) + "\n" * (40 * 4096) + "".join(lines[1500:])
    rows, stats = read_all(gz(tmp_path, text), "com.")
    assert len(rows) == 3000 and stats.malformed == 0
    assert len(ahead) > 40
    # Arrow alone reads up to 32 blocks ahead; held back, it reads 2 ahead of the tables taken (a few
    # more only while the taker waits through the blank blocks)
    assert sorted(ahead)[len(ahead) // 2] <= 3
