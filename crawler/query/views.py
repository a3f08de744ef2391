"""DuckDB over the stored layout: per namespace, ``<table>`` (latest record per key) and
``<table>_history`` (every stored record), with the Hive partition columns ``year``, ``month``, ``day``.

Local folders are read with DuckDB's own ``read_parquet``; S3/R2 through pyarrow's S3 filesystem
registered as a dataset (DuckDB's httpfs extension cannot be installed offline; see the README).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from crawler.items import Record, arrow_schema
from crawler.storage import ObjectStore
from crawler.storage.layout import PARTITION_COLUMNS, is_data_key, namespace_prefix


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def parquet_keys(store: ObjectStore, namespace: str) -> list[str]:
    return [obj.key for obj in store.list(namespace_prefix(namespace)) if is_data_key(obj.key, namespace, "parquet")]


def connect(store: ObjectStore) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of every namespace."""
    con = duckdb.connect(":memory:")
    for record_type in Record.registry.values():
        register_namespace(con, store, record_type)
    return con


def register_namespace(con: duckdb.DuckDBPyConnection, store: ObjectStore, record_type: type[Record]) -> None:
    table = record_type.table
    history = f"{table}_history"
    keys = parquet_keys(store, record_type.namespace)
    if not keys:
        empty = arrow_schema(record_type)
        for column in PARTITION_COLUMNS:
            empty = empty.append(pa.field(column, pa.int64()))
        con.register(f"_{table}_empty", empty.empty_table())
        source = f"SELECT * FROM _{table}_empty"
    elif store.local_path(keys[0]) is not None:
        files = ", ".join(_sql_string(str(store.local_path(key))) for key in keys)
        source = f"SELECT * FROM read_parquet([{files}], hive_partitioning = true, union_by_name = true)"
    else:
        filesystem, base = store.arrow_filesystem()
        dataset = ds.dataset(
            [f"{base}/{key}" for key in keys],
            filesystem=filesystem,
            format="parquet",
            partitioning=ds.partitioning(flavor="hive"),
            partition_base_dir=f"{base}/{record_type.namespace}",
        )
        con.register(f"_{table}_dataset", dataset)
        source = f"SELECT * FROM _{table}_dataset"
    con.execute(f"CREATE OR REPLACE VIEW {_quote(history)} AS {source}")
    key = ", ".join(_quote(column) for column in record_type.key)
    # Latest per key (DESIGN §3.2): ties on _ingested_at are broken by the later run id.
    con.execute(
        f"CREATE OR REPLACE VIEW {_quote(table)} AS SELECT * FROM {_quote(history)} "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _ingested_at DESC, _run_id DESC) = 1"
    )
