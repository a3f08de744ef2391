from pathlib import Path

from crawler.query.schemas_doc import render

DOC = Path(__file__).resolve().parent.parent / "db" / "r2-schemas.md"


def test_r2_schemas_doc_is_up_to_date():
    assert DOC.read_text() == render(), "db/r2-schemas.md is stale: run `scrapy schemas`"


def test_doc_lists_every_column_of_every_namespace():
    text = render()
    assert "## `npm` — table `npm_package`" in text and "## `pypi` — table `pypi_package`" in text
    assert "| `dependencies` | `map<string, string>` | no |" in text
    assert "| `_ingested_at` (metadata) | `timestamp[us, tz=UTC]` | no |" in text
