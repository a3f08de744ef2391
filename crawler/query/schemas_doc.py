"""``db/r2-schemas.md``: the stored schemas, generated from the record types (never edited by hand)."""

from __future__ import annotations

from crawler.items import METADATA_FIELDS, Record, arrow_schema
from crawler.storage.layout import COMPACTED_TEMPLATE, TEMPLATE

HEADER = f"""# Stored schemas

Generated from the record types in `crawler/items/` by `scrapy schemas`; do not edit.
Every namespace is stored as `{TEMPLATE}`
(compacted files: `{COMPACTED_TEMPLATE}`); the date is the UTC ingestion date. Queries see
`<table>` (the latest record per primary key) and `<table>_history` (every record), both with the partition
columns `year`, `month`, `day`.
"""


def render() -> str:
    parts = [HEADER]
    for namespace in sorted(Record.registry):
        record_type = Record.registry[namespace]
        schema = arrow_schema(record_type)
        parts.append(
            f"\n## `{namespace}` — table `{record_type.table}`\n\n"
            f"Primary key: {', '.join(f'`{k}`' for k in record_type.key)}. "
            f"Schema version {record_type.schema_version}. {(record_type.__doc__ or '').strip()}\n\n"
            "| column | type | nullable |\n|---|---|---|\n"
        )
        for field in schema:
            note = " (metadata)" if field.name in METADATA_FIELDS else ""
            parts.append(f"| `{field.name}`{note} | `{field.type}` | {'yes' if field.nullable else 'no'} |\n")
    return "".join(parts)
