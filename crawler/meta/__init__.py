"""Operational metadata database (runs, cursors, dead letters, R2 partition catalogue)."""

from crawler.meta.db import DEFAULT_PAYLOAD_LIMIT, PARTITION_FORMATS, MetaDB, PartitionRow, schema_sql, utcnow

__all__ = ["DEFAULT_PAYLOAD_LIMIT", "PARTITION_FORMATS", "MetaDB", "PartitionRow", "schema_sql", "utcnow"]
