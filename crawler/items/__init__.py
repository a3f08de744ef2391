"""Record types: the base here, one type per namespace in each source's package.

``Record.registry`` lists every source's record types (reading it imports the source packages), so
that the query layer, compaction and the generated documentation see every namespace.
"""

from crawler.items.base import METADATA_FIELDS, JsonText, Record, arrow_schema

__all__ = ["METADATA_FIELDS", "JsonText", "Record", "arrow_schema"]
