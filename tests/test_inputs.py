"""Inputs from stored data: domains and people read through the records' declarations, by source or
namespace, from the latest record of each key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from scrapy.exceptions import UsageError
from scrapy.settings import Settings

from crawler.inputs import record_types, registrable_domain, stored_domains, stored_people
from crawler.items import Record
from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import BatchWriter
from crawler.sources import all_sources
from crawler.storage import open_store

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
T1 = datetime(2026, 11, 21, 8, tzinfo=UTC)


@pytest.fixture
def contacts() -> Any:
    """A test namespace that declares domain and people columns (kept out of the registry after)."""

    class Contact(Record):
        namespace = "test/contacts"
        table = "test_contact"
        key = ("id",)
        domain_columns: ClassVar[tuple[str, ...]] = ("site", "email")
        domain_filter: ClassVar[str | None] = "NOT hidden"
        people_columns: ClassVar[tuple[tuple[str, str], ...]] = (("name", "email"),)

        id: int
        name: str | None = None
        email: str | None = None
        site: str | None = None
        hidden: bool = False

    yield Contact
    Record.registry.pop("test/contacts")


def _write(root: Path, record_type: type[Record], records: list[dict], when: datetime, run: str) -> None:
    store = open_store(str(root))
    batch = Batch(record_type, when.date())
    for i, fields in enumerate(records):
        row = record_type(**fields).to_row()
        row.update(_source="test", _ingested_at=when, _run_id=run, _schema_version=1)
        batch.add(row, i + 1)
    with MetaDB.connect(f"sqlite:///{root / 'meta.sqlite'}") as meta:
        PartitionIndex(store, meta).record(BatchWriter(store).write(batch), run)


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("https://www.Example.co.uk/docs?x=1", "example.co.uk"),
        ("Ada@Mail.Example.org", "example.org"),
        ("docs.example.com/path", "example.com"),
        ("//cdn.example.net/x.js", "example.net"),
        ("example.com:8080", "example.com"),
        ("http://127.0.0.1/", None),
        ("localhost", None),
        ("", None),
        ("http://[::1", None),
    ],
)
def test_registrable_domain(value: str, domain: str | None) -> None:
    assert registrable_domain(value) == domain


def test_domains_come_from_the_latest_records_and_the_filter(tmp_path: Path, contacts: type[Record]) -> None:
    _write(
        tmp_path,
        contacts,
        [
            {"id": 1, "site": "https://old.example.com/", "email": "a@example.com"},
            {"id": 2, "site": "https://www.example.org/", "hidden": True},
            {"id": 3, "email": "b@sub.example.net"},
        ],
        T0,
        "r1",
    )
    # a later run: id 1 moved to another site; only the latest record of a key counts
    _write(tmp_path, contacts, [{"id": 1, "site": "https://example.io"}], T1, "r2")
    settings = Settings({"STORAGE_URI": str(tmp_path), "META_DB_URL": f"sqlite:///{tmp_path / 'meta.sqlite'}"})
    assert sorted(stored_domains(settings, "test/contacts")) == ["example.io", "example.net"]


def test_people_split_address_lists_and_keep_declared_names(tmp_path: Path, contacts: type[Record]) -> None:
    _write(
        tmp_path,
        contacts,
        [
            {"id": 1, "name": "Ada Lovelace", "email": "Ada@Example.com"},
            {"id": 2, "email": "Grace Hopper <grace@example.org>, alan@example.org"},
            {"id": 3, "name": "No Address"},
            {"id": 4, "name": "Not an address", "email": "nobody"},
        ],
        T0,
        "r1",
    )
    settings = Settings({"STORAGE_URI": str(tmp_path)})
    assert sorted(stored_people(settings, "test/contacts"), key=lambda p: p[1]) == [
        ("Ada Lovelace", "ada@example.com"),
        (None, "alan@example.org"),
        ("Grace Hopper", "grace@example.org"),
    ]


def test_an_empty_store_yields_nothing(tmp_path: Path, contacts: type[Record]) -> None:
    assert list(stored_domains(Settings({"STORAGE_URI": str(tmp_path)}), "test/contacts")) == []


def test_selectors_name_a_source_or_a_namespace(contacts: type[Record]) -> None:
    for name, source in all_sources().items():
        assert record_types(name) == list(source.records)
    assert record_types("test/contacts") == [contacts]
    with pytest.raises(UsageError, match="not a source or namespace"):
        record_types("nonesuch")


def test_a_selector_whose_records_name_no_domains_is_a_usage_error(contacts: type[Record]) -> None:
    class Plain(Record):
        namespace = "test/plain"
        table = "test_plain"
        key = ("id",)
        id: int

    try:
        with pytest.raises(UsageError, match="name no domains"):
            next(stored_domains(Settings(), "test/plain"))
        with pytest.raises(UsageError, match="name no people"):
            next(stored_people(Settings(), "test/plain"))
    finally:
        Record.registry.pop("test/plain")
