"""The object-key layout: one module builds and parses every key, and no other module knows the template."""

import io
import tokenize
from datetime import date
from pathlib import Path

import pytest

from crawler.storage.layout import (
    DataKey,
    batch_keys,
    catalog_key,
    compacted_key,
    is_data_key,
    namespace_prefix,
    parse_key,
    partition_day,
    partition_name,
    partition_prefix,
)

DAY = date(2026, 3, 7)
CRAWLER = Path(__file__).resolve().parents[2] / "crawler"
# pieces of the template a module would write to build or parse keys itself
MARKERS = ("year=", "month=", "day=", "batch_{", "compacted_{")


def test_batch_keys_follow_the_design_layout():
    parquet, ndjson = batch_keys("npm", DAY, unix_ts=1764090000, object_id="3f2a9c1b0d4e")
    assert parquet == "npm/year=2026/month=03/day=07/batch_1764090000_3f2a9c1b0d4e.parquet"
    assert ndjson == "npm/year=2026/month=03/day=07/batch_1764090000_3f2a9c1b0d4e.ndjson"


def test_new_batch_keys_are_twins_with_a_fresh_id_and_the_current_time():
    first, twin = batch_keys("pypi", DAY)
    other, _ = batch_keys("pypi", DAY)
    assert first.removesuffix(".parquet") == twin.removesuffix(".ndjson")
    assert first != other
    stem = parse_key(first).stem
    kind, unix_ts, object_id = stem.split("_")
    assert kind == "batch" and int(unix_ts) > 1_700_000_000 and len(object_id) == 12


def test_compacted_and_catalog_keys():
    assert (
        compacted_key("github/repos", DAY, unix_ts=5, object_id="ab12")
        == "github/repos/year=2026/month=03/day=07/compacted_5_ab12.parquet"
    )
    assert catalog_key("github/repos") == "github/repos/_metadata/catalog.json"
    assert partition_name(DAY) == "year=2026/month=03/day=07"
    assert partition_prefix("npm", DAY) == "npm/year=2026/month=03/day=07/"
    assert namespace_prefix("npm") == "npm/year="


@pytest.mark.parametrize("namespace", ["npm", "github/commits"])
def test_parse_round_trips(namespace):
    for key in (*batch_keys(namespace, DAY), compacted_key(namespace, DAY)):
        parsed = parse_key(key)
        assert parsed is not None and parsed.key == key
        assert parsed.namespace == namespace and parsed.day == DAY
    assert parse_key(batch_keys(namespace, DAY)[0]).kind == "batch"
    assert parse_key(compacted_key(namespace, DAY)).kind == "compacted"


@pytest.mark.parametrize(
    "key",
    [
        "npm/_metadata/catalog.json",
        "zones/com/2026-03-07.zone.gz",
        "npm/year=2026/month=13/day=01/batch_1_a.parquet",  # no such date
        "npm/year=2026/month=03/day=07/batch_1_a.csv",
        "npm/year=2026/month=03/batch_1_a.parquet",
        "npm/year=2026/month=03/day=07/sub/batch_1_a.parquet",
    ],
)
def test_other_keys_are_not_data(key):
    assert parse_key(key) is None and not is_data_key(key)


def test_a_file_named_by_someone_else_in_a_partition_is_still_data():
    parsed = parse_key("npm/year=2026/month=03/day=07/part-0.parquet")
    assert parsed == DataKey("npm", DAY, "part-0", "parquet") and parsed.kind == "other"


def test_is_data_key_filters_by_namespace_and_format():
    parquet, ndjson = batch_keys("github/repos", DAY)
    assert is_data_key(parquet, "github/repos", "parquet") and not is_data_key(ndjson, "github/repos", "parquet")
    assert not is_data_key(parquet, "github") and not is_data_key(parquet, "npm")


def _string_tokens(path: Path) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    kinds = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return [tok.string for tok in tokens if tok.type in kinds]


def test_no_other_module_spells_the_template():
    """Keys are built and parsed in crawler/storage/layout.py only (strings, f-strings and docstrings)."""
    offenders = [
        str(path.relative_to(CRAWLER))
        for path in sorted(CRAWLER.rglob("*.py"))
        if path.name != "layout.py" or path.parent.name != "storage"
        if any(marker in text for text in _string_tokens(path) for marker in MARKERS)
    ]
    assert offenders == []


def test_a_partition_name_reads_back_as_its_day():
    day = date(2026, 11, 29)
    assert partition_day(partition_name(day)) == day
    for other in ("year=2026/month=13/day=01", "year=2026/month=11", "day=29", "_metadata", ""):
        assert partition_day(other) is None
