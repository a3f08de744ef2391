import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from crawler.items import Record, arrow_schema
from crawler.spiders.npm.records import NpmPackage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "npm"
SAMPLES = Path(__file__).parents[3] / "shared" / "samples" / "npm"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_latest_version_fields():
    record = NpmPackage.from_packument(load("left-trim.json"))
    assert record.name == "left-trim"
    assert record.version == "2.1.0"  # the latest dist-tag, not the newest version
    assert record.author_name == "Ada Example"
    assert record.author_email == "ada@example.test"
    assert record.license == "MIT"
    assert record.keywords == ["string", "trim"]
    assert record.dependencies == {"tiny-dep": "^1.2.0"}
    assert record.dev_dependencies == {"tap": "^16.0.0"}
    assert record.peer_dependencies == {"host-lib": ">=2"}
    assert [m.model_dump() for m in record.maintainers] == [
        {"name": "ada", "email": "ada@example.test"},
        {"name": "bob", "email": "bob@example.test"},
    ]
    assert record.repository_url == "https://github.com/ada-example/left-trim"
    assert record.homepage == "https://example.test/left-trim"
    assert record.created == datetime(2015, 3, 2, 10, tzinfo=UTC)
    assert record.modified == datetime(2024, 6, 1, 12, 30, 0, 500000, tzinfo=UTC)
    assert record.versions_count == 3
    assert record.dist_tags == {"latest": "2.1.0", "next": "3.0.0-rc.1"}
    assert record.deprecated == "use trim-start"
    assert record.unpublished is False and record.deleted is False
    assert record.rev.startswith("7-")


def test_manifest_is_json_text_without_readme():
    row = NpmPackage.from_packument(load("left-trim.json")).to_row()
    manifest = json.loads(row["manifest"])
    assert manifest["version"] == "2.1.0"
    assert "readme" not in manifest
    assert manifest["dist"]["integrity"] == "sha512-xyz"


def test_scoped_package_and_legacy_licenses():
    record = NpmPackage.from_packument(load("@scope-one%2Fwidget.json"))
    assert record.name == "@scope-one/widget"
    assert record.license == "MIT OR Apache-2.0"
    assert record.repository_url == "https://github.com/scope-one/widget"


def test_unpublished_package():
    record = NpmPackage.from_packument(load("gone-away.json"))
    assert record.unpublished is True
    assert record.version is None and record.versions_count == 0
    assert record.manifest is None


def test_tombstone_and_nameless_packument():
    assert NpmPackage.tombstone("x").deleted is True
    with pytest.raises(ValueError):
        NpmPackage.from_packument({"versions": {}})
    with pytest.raises(ValidationError):
        NpmPackage(name="x", versions_count="many")


def test_rows_fit_the_arrow_schema():
    rows = []
    for name in ("left-trim.json", "@scope-one%2Fwidget.json", "gone-away.json"):
        row = NpmPackage.from_packument(load(name)).to_row()
        row.update(_source="npm", _ingested_at=datetime.now(UTC), _run_id="r", _schema_version=1)
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=arrow_schema(NpmPackage))
    assert table.num_rows == 3
    assert table.schema.field("dependencies").type == pa.map_(pa.string(), pa.string())
    assert table.schema.field("manifest").type == pa.string()
    assert table.schema.field("_ingested_at").type == pa.timestamp("us", tz="UTC")
    assert Record.registry["npm"] is NpmPackage


@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*full.json")) if SAMPLES.exists() else [])
def test_conformance_with_recorded_packuments(sample):
    doc = json.loads((SAMPLES / sample).read_text())
    record = NpmPackage.from_packument(doc)
    assert record.name == doc["name"]
    assert record.versions_count == len(doc.get("versions", {}))
    latest = doc.get("dist-tags", {}).get("latest")
    assert record.version == latest
    assert record.unpublished == ("unpublished" in doc.get("time", {}))
    if latest:
        assert record.description == doc["versions"][latest].get("description", doc.get("description"))


def test_a_manifest_too_deep_to_store_fails_when_the_record_is_built():
    deep: dict = {}
    node = deep
    for _ in range(400):  # deeper than the JSON encoder allows
        node["a"] = {}
        node = node["a"]
    doc = {"name": "deep", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {"name": "deep", "x": deep}}}
    with pytest.raises(ValueError, match="not storable as JSON text"):
        NpmPackage.from_packument(doc)
