"""The day-over-day diff: a merge of two sorted snapshots, checked against a DuckDB join (the diff it
replaced) on generated zones and on the edge cases of a batch-wise merge."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawler.spiders.czds import changes as diff
from crawler.spiders.czds import zonefile
from tests.fakes.czds import write_zone

#: DuckDB's answer: one full outer join of the names, the name servers joined back
REFERENCE = """
    WITH changed AS (
        SELECT coalesce(n.fqdn, o.fqdn) AS fqdn, o.fqdn IS NULL AS added
        FROM read_parquet($new) AS n FULL JOIN read_parquet($old) AS o ON n.fqdn = o.fqdn
        WHERE n.fqdn IS NULL OR o.fqdn IS NULL
    )
    SELECT c.fqdn, 'added' AS change, n.name_servers
    FROM changed AS c JOIN read_parquet($new) AS n ON n.fqdn = c.fqdn WHERE c.added
    UNION ALL
    SELECT c.fqdn, 'removed' AS change, o.name_servers
    FROM changed AS c JOIN read_parquet($old) AS o ON o.fqdn = c.fqdn WHERE NOT c.added
"""


def reference(new: str, old: str) -> list[tuple]:
    rows = duckdb.connect().execute(REFERENCE, {"new": new, "old": old}).fetchall()
    return sorted((fqdn, change, tuple(servers)) for fqdn, change, servers in rows)


def merged(new: str, old: str, directory: Path) -> list[tuple]:
    rows = [row for batch in diff.changes(new, old, spill_directory=str(directory)) for row in batch.to_pylist()]
    order = diff.snapshot_order(new) if diff.snapshot_order(new) == diff.snapshot_order(old) else diff.BYTE_ORDER
    keys = [row["fqdn"] if order == diff.BYTE_ORDER else row["fqdn"].rsplit(".", 1)[0] for row in rows]
    assert keys == sorted(keys), "the changes come in the snapshots' order"
    return sorted((row["fqdn"], row["change"], tuple(row["name_servers"])) for row in rows)


def snapshot(path: Path, domains: dict[str, list[str]], *, chunk: int = 1000, zone: str | None = None) -> str:
    """A snapshot written as the spider writes it, ``chunk`` names per parsed table, in the given order."""
    writer = diff.SnapshotWriter(str(path), zone=zone)
    names = list(domains)
    for start in range(0, len(names), chunk):
        part = names[start : start + chunk]
        writer.write(pa.table({"fqdn": part, "name_servers": [domains[name] for name in part]}))
    writer.close()
    return str(path)


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of a few rows, so that every step of the merge meets a batch boundary."""
    monkeypatch.setattr(diff, "READ_ROWS", 7)
    monkeypatch.setattr(diff, "ROWS_PER_BATCH", 5)
    monkeypatch.setattr(diff, "ROWS_PER_GROUP", 11)


def test_the_diff_of_two_generated_zone_dates_is_the_joins(tmp_path, small_batches):
    paths = []
    for day in (0, 1):
        zone = write_zone(tmp_path / f"z{day}.gz", "example", 3000, day=day, churn=40)
        writer = diff.SnapshotWriter(str(tmp_path / f"s{day}.parquet"))
        for table in zonefile.delegations(str(zone), "example.", zonefile.ZoneStats()):
            writer.write(table)
        writer.close()
        assert writer.in_order, "the generated zone is in name order: no sort needed"
        paths.append(str(tmp_path / f"s{day}.parquet"))
    expected = reference(paths[1], paths[0])
    assert [c for _, c, _ in expected].count("added") == 40 and len(expected) == 80
    assert merged(paths[1], paths[0], tmp_path) == expected


def test_added_removed_and_changed_name_servers(tmp_path, small_batches):
    generator = random.Random(12)
    names = sorted({f"{generator.choice('abcxyz')}{generator.randrange(10**6)}.example" for _ in range(600)})
    old = {name: [f"ns{generator.randrange(9)}.host.net"] for name in names if generator.random() < 0.8}
    new = {name: [f"ns{generator.randrange(9)}.host.net"] for name in names if generator.random() < 0.8}
    # a name on both days with other name servers is not a change: the same answer as the join
    old_path, new_path = snapshot(tmp_path / "old.parquet", old), snapshot(tmp_path / "new.parquet", new, chunk=13)
    expected = reference(new_path, old_path)
    assert {change for _, change, _ in expected} == {"added", "removed"}
    assert merged(new_path, old_path, tmp_path) == expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ([], []),
        ([], ["a.x", "b.x"]),
        (["a.x", "b.x"], []),
        (["a.x", "c.x", "e.x"], ["b.x", "d.x", "f.x"]),  # all changed, interleaved
        ([f"a{i:03}.x" for i in range(30)], [f"b{i:03}.x" for i in range(30)]),  # all changed, apart
        ([f"n{i:03}.x" for i in range(40)], [f"n{i:03}.x" for i in range(40)]),  # nothing changed
        # names that are prefixes of others ("a.x" sorts after "a-b.x" and "a0.x" before it)
        (["a-b.x", "a.x", "a0.x", "ab.x"], ["a-b.x", "a-c.x", "a.x", "a.b.x"]),
        # a change as the first and the last name of a batch of 7, on either side
        ([f"n{i:03}.x" for i in range(28)], [f"n{i:03}.x" for i in range(28) if i not in (0, 6, 7, 13, 27)]),
        ([f"n{i:03}.x" for i in range(28) if i not in (0, 6, 7, 13, 27)], [f"n{i:03}.x" for i in range(28)]),
    ],
)
def test_edge_cases_give_the_joins_answer(tmp_path, small_batches, old, new):
    old_path = snapshot(tmp_path / "old.parquet", {name: ["ns.old.net"] for name in old}, chunk=3)
    new_path = snapshot(tmp_path / "new.parquet", {name: ["ns.new.net"] for name in new}, chunk=5)
    expected = reference(new_path, old_path)
    assert merged(new_path, old_path, tmp_path) == expected
    assert len(expected) == len(set(old) ^ set(new))


def test_a_zone_out_of_order_is_sorted_out_of_core(tmp_path, monkeypatch, small_batches):
    # runs of 5 rows merged 2 at a time: several merge passes
    monkeypatch.setattr(diff, "SORT_RUN_ROWS", 5)
    monkeypatch.setattr(diff, "SORT_READ_ROWS", 2)
    monkeypatch.setattr(diff, "SORT_FAN_IN", 2)
    generator = random.Random(3)
    names = [f"{generator.randrange(10**5)}.example" for _ in range(120)]
    domains = {name: [f"ns.{name}"] for name in names}  # repeated names: their first row is kept
    path = tmp_path / "snapshot.parquet"
    writer = diff.SnapshotWriter(str(path))
    for start in range(0, len(names), 9):
        part = names[start : start + 9]
        writer.write(pa.table({"fqdn": part, "name_servers": [domains[name] for name in part]}))
    writer.close()
    assert not writer.in_order
    table = pq.read_table(path)
    assert table.column("fqdn").to_pylist() == sorted(set(names))
    assert table.column("name_servers").to_pylist() == [[f"ns.{name}"] for name in sorted(set(names))]
    assert diff.snapshot_order(str(path)) == diff.BYTE_ORDER == writer.order
    assert not list(tmp_path.glob(".download-*")), "the sort's runs are removed"


def test_the_rfc1035_sample_zone_out_of_order_diffs_right(tmp_path, small_batches):
    # delta.sub.test comes after gamma in the file: the snapshot is sorted as it closes
    from tests.spiders.test_czds_zonefile import MASTER_FILE, gz

    old = snapshot(tmp_path / "old.parquet", {"alpha.test": ["ns1.alpha.test"], "zulu.test": ["ns.z.net"]})
    writer = diff.SnapshotWriter(str(tmp_path / "new.parquet"))
    for table in zonefile.delegations(gz(tmp_path, MASTER_FILE), "test.", zonefile.ZoneStats()):
        writer.write(table)
    writer.close()
    assert not writer.in_order
    new = str(tmp_path / "new.parquet")
    assert merged(new, old, tmp_path) == reference(new, old)


def test_a_snapshot_written_before_they_were_sorted_is_sorted_into_a_copy(tmp_path, small_batches):
    names = [f"{i * 7919 % 1000:03}.x" for i in range(50)]
    unsorted = tmp_path / "old.parquet"
    pq.write_table(pa.table({"fqdn": names, "name_servers": [["ns.x.net"]] * 50}), unsorted)  # no order mark
    before = unsorted.read_bytes()
    new = snapshot(tmp_path / "new.parquet", {name: ["ns.x.net"] for name in sorted([*names[5:], "new.x"])})
    assert merged(new, str(unsorted), tmp_path) == reference(new, str(unsorted))
    assert unsorted.read_bytes() == before, "the stored snapshot is left as it is"
    assert not list(tmp_path.glob(".download-*"))


def test_a_snapshot_marked_sorted_but_not_is_an_error(tmp_path, small_batches):
    path = tmp_path / "bad.parquet"
    with pq.ParquetWriter(path, diff.SNAPSHOT_SCHEMA) as writer:
        writer.write_table(pa.table({"fqdn": ["b.x", "a.x"], "name_servers": [[], []]}, schema=diff.SNAPSHOT_SCHEMA))
        writer.add_key_value_metadata({diff.ORDER_METADATA_KEY: diff.BYTE_ORDER.encode()})
    good = snapshot(tmp_path / "good.parquet", {"a.x": []})
    with pytest.raises(diff.NotSorted):
        list(diff.changes(str(path), good, spill_directory=str(tmp_path)))


def canonical(names: list[str]) -> list[str]:
    """Names one label below the zone in DNS's canonical order (by label: ``a.x`` before ``a-b.x``)."""
    return sorted(names, key=lambda name: name.rsplit(".", 1)[0])


def test_a_zone_in_canonical_order_is_kept_as_it_is_and_diffs_right(tmp_path, small_batches):
    generator = random.Random(5)
    labels = {"".join(generator.choice("ab-0") for _ in range(generator.randint(1, 4))) for _ in range(300)}
    labels = {label for label in labels if not label.startswith("-")}
    old_names = canonical([f"{label}.x" for label in labels if generator.random() < 0.8])
    new_names = canonical([f"{label}.x" for label in labels if generator.random() < 0.8])
    assert old_names != sorted(old_names), "canonical order is not byte order here"
    old = snapshot(tmp_path / "old.parquet", {n: ["ns.old.net"] for n in old_names}, chunk=7, zone="x")
    new = snapshot(tmp_path / "new.parquet", {n: ["ns.new.net"] for n in new_names}, chunk=5, zone="x")
    assert diff.snapshot_order(old) == diff.snapshot_order(new) == "label:.x"
    assert pq.read_table(new).column("fqdn").to_pylist() == new_names, "not sorted again"
    assert merged(new, old, tmp_path) == reference(new, old)
    # a zone date in byte order against one in canonical order: the canonical one is sorted into a copy
    resorted = snapshot(tmp_path / "bytes.parquet", {n: ["ns.new.net"] for n in sorted(new_names)}, zone="x")
    assert diff.snapshot_order(resorted) == diff.BYTE_ORDER
    assert merged(resorted, old, tmp_path) == reference(resorted, old)
    assert not list(tmp_path.glob(".download-*"))


def test_a_name_outside_the_zone_rules_out_the_canonical_order(tmp_path):
    path = snapshot(tmp_path / "s.parquet", {"a.x": [], "a-b.x": [], "b.y": []}, zone="x")
    assert diff.snapshot_order(path) == diff.BYTE_ORDER
    assert pq.read_table(path).column("fqdn").to_pylist() == ["a-b.x", "a.x", "b.y"]
