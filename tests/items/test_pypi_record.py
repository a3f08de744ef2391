import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawler.spiders.pypi.records import PypiPackage, latest_version, license_of, metadata_fields, normalize_name

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pypi"
SAMPLES = Path(__file__).parents[3] / "shared" / "samples" / "pypi"


def test_json_api_record():
    record = PypiPackage.from_json_api(json.loads((FIXTURES / "Tiny_Tool.json").read_text()))
    assert record.name == "tiny-tool" and record.display_name == "Tiny_Tool"
    assert record.version == "2.0.0"  # 2.1.0 is yanked, 3.0.0b1 a pre-release
    assert record.author is None and record.author_email == "Ada Example <ada@example.test>"
    assert record.maintainer is None  # "UNKNOWN"
    assert record.license == "MIT License"  # from the classifier, the field being empty
    assert record.requires_python == ">=3.9"
    assert record.requires_dist == ["requests>=2", 'rich; extra == "cli"']
    assert record.repository_url == "https://github.com/ada-example/tiny-tool"
    assert record.upload_time == datetime(2024, 2, 2, 10, 0, tzinfo=UTC)
    assert record.release_count == 5
    assert [(y.version, y.reason) for y in record.yanked_releases] == [("1.5.0", "broken build"), ("2.1.0", None)]
    assert record.vulnerabilities_count == 1
    assert record.last_serial == 4242 and record.api == "json"


@pytest.mark.parametrize(
    ("name", "normalized"), [("Django", "django"), ("zope.Interface", "zope-interface"), ("A__b--C", "a-b-c")]
)
def test_pep503_normalization(name, normalized):
    assert normalize_name(name) == normalized


def test_license_precedence():
    assert license_of("Apache-2.0 OR MIT", "BSD", ["License :: OSI Approved :: MIT License"]) == "Apache-2.0 OR MIT"
    assert license_of(None, "Copyright 2020\nPermission is hereby granted…", []) == "Copyright 2020"
    assert license_of(None, "UNKNOWN", ["License :: OSI Approved :: BSD License"]) == "BSD License"
    assert license_of(None, None, None) is None


def test_latest_version_rules():
    files = {"1.0": [{"yanked": False}], "2.0rc1": [{"yanked": False}], "1.1": [{"yanked": True}]}
    assert latest_version(files) == "1.0"
    assert latest_version({"2.0rc1": [{"yanked": False}], "1.0": [{"yanked": True}]}) == "2.0rc1"
    assert latest_version({"1.0": [{"yanked": True}], "0.9": [{"yanked": True}]}) == "1.0"
    assert latest_version({"not a version": []}) == "not a version"


def test_simple_page_record_with_core_metadata():
    files = [
        {"version": "1.0", "yanked": False, "upload-time": "2024-01-01T00:00:00Z"},
        {"version": "1.1", "yanked": "security hole", "upload-time": "2024-02-01T00:00:00Z"},
    ]
    metadata = (
        b"Metadata-Version: 2.1\nName: Tiny-Tool\nVersion: 1.0\nSummary: A tiny tool\n"
        b"License-Expression: MIT\nRequires-Dist: requests>=2\nRequires-Python: >=3.9\n"
        b"Project-URL: Source, https://github.com/ada-example/tiny-tool\n\nlong description"
    )
    record = PypiPackage.from_simple_page("Tiny-Tool", files, ["1.0", "1.1"], 77, metadata)
    assert record.name == "tiny-tool" and record.version == "1.0" and record.api == "simple"
    assert record.yanked_releases[0].version == "1.1" and record.yanked_releases[0].reason == "security hole"
    assert record.summary == "A tiny tool" and record.license == "MIT"
    assert record.requires_dist == ["requests>=2"]
    assert record.repository_url == "https://github.com/ada-example/tiny-tool"
    assert record.release_count == 2 and record.last_serial == 77
    assert metadata_fields(b"Metadata-Version: 2.1\nName: x\n")["summary"] is None
    for not_metadata in (b"", b"Name: x\n", b"<html><body>Not Found</body></html>"):
        with pytest.raises(ValueError, match="not a core metadata file"):
            metadata_fields(not_metadata)


def test_tombstone_uses_the_normalized_key():
    record = PypiPackage.tombstone("Foo.Bar", 9)
    assert record.name == "foo-bar" and record.deleted and record.last_serial == 9


@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
@pytest.mark.parametrize(
    "sample",
    [p.name for p in sorted(SAMPLES.glob("*.json")) if "info" in json.loads(p.read_text())] if SAMPLES.exists() else [],
)
def test_conformance_with_recorded_json_api(sample):
    doc = json.loads((SAMPLES / sample).read_text())
    record = PypiPackage.from_json_api(doc)
    info = doc["info"]
    assert record.name == normalize_name(info["name"])
    assert record.version == info["version"]
    assert record.last_serial == doc["last_serial"]
    assert record.release_count == len(doc["releases"])
    assert record.vulnerabilities_count == len(doc.get("vulnerabilities", []))
    assert record.requires_dist == (info.get("requires_dist") or [])
    assert record.classifiers == info["classifiers"]
    expected_license = info.get("license_expression") or (info.get("license") or "").splitlines()[0] or None
    assert record.license == expected_license


def test_license_expressions_are_canonical_spdx():
    assert license_of("mit or apache-2.0", None, None) == "MIT OR Apache-2.0"
    assert license_of("Not (a valid expression", None, None) == "Not (a valid expression"
    assert license_of(None, "BSD\nfull text…", None) == "BSD"
