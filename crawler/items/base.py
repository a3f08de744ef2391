"""The record base: one pydantic model per namespace is the single source of truth for its Parquet schema.

A subclass declares its ``namespace`` (the storage prefix), its primary ``key`` fields and its
``schema_version``; :func:`arrow_schema` derives the Arrow schema from the field annotations, so the
NDJSON rows, the Parquet files and the generated documentation cannot drift apart.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import orjson
import pyarrow as pa
from pydantic import BaseModel, BeforeValidator, ConfigDict

# Columns added to every record of every namespace by the normalize pipeline.
METADATA_FIELDS: dict[str, pa.DataType] = {
    "_source": pa.string(),
    "_ingested_at": pa.timestamp("us", tz="UTC"),
    "_run_id": pa.string(),
    "_schema_version": pa.int32(),
}


class _JsonColumn:
    """Marker: the value is stored as JSON text (a string column in Parquet)."""


def _to_json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError as exc:  # e.g. nested deeper than the encoder allows
        raise ValueError(f"not storable as JSON text: {exc}") from None


#: A free-form JSON value (given decoded, e.g. a package manifest), kept as JSON text. Encoded when the
#: record is built, so a value that cannot be stored fails there (a dead letter), not in the pipelines.
JsonText = Annotated[str | None, _JsonColumn(), BeforeValidator(_to_json_text)]


class _Registry(dict[str, type["Record"]]):
    """Record types by namespace. Reading it first imports every source package (whose record types
    register themselves), so that the query layer, compaction and the docs see every namespace."""

    _loading = False
    _loaded = False

    def _load(self) -> None:
        if not (self._loaded or self._loading):
            self._loading = True
            try:
                from crawler.sources import all_sources

                all_sources()
                self._loaded = True
            finally:
                self._loading = False

    def __getitem__(self, key: str) -> type[Record]:
        self._load()
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def __contains__(self, key: object) -> bool:
        self._load()
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._load()
        return super().get(key, default)

    def keys(self) -> Any:
        self._load()
        return super().keys()

    def values(self) -> Any:
        self._load()
        return super().values()

    def items(self) -> Any:
        self._load()
        return super().items()


class Record(BaseModel):
    """Base of every stored record type.

    Subclasses set the class variables below; fields are the record's columns. Records are built
    by spiders (validation errors there become dead letters) and turned into rows by the normalize
    pipeline, which adds :data:`METADATA_FIELDS`.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    namespace: ClassVar[str]
    #: the SQL view of the namespace (latest record per key); ``<table>_history`` holds every record
    table: ClassVar[str]
    key: ClassVar[tuple[str, ...]]
    schema_version: ClassVar[int] = 1
    #: the column holding the source's own version of a record (comparable, increasing over time per
    #: key: a modification time, a serial). The latest record of a key is the one with the highest
    #: version (NULL last), then the latest ``_ingested_at``, then ``_run_id``; without one, by
    #: ``_ingested_at`` and ``_run_id`` alone (host clocks). Not named ``version``: records often have a
    #: ``version`` column (a package's version), which a class variable of that name would clash with.
    version_column: ClassVar[str | None] = None
    #: columns whose values (a domain, host name, URL or email address) name a domain that other
    #: sources may look up (:func:`crawler.inputs.stored_domains`)
    domain_columns: ClassVar[tuple[str, ...]] = ()
    #: a SQL condition selecting the rows whose ``domain_columns`` count (e.g. only additions)
    domain_filter: ClassVar[str | None] = None
    #: (name column, email address column) pairs: the people a record names
    #: (:func:`crawler.inputs.stored_people`)
    people_columns: ClassVar[tuple[tuple[str, str], ...]] = ()

    registry: ClassVar[dict[str, type[Record]]] = _Registry()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        namespace = cls.__dict__.get("namespace")
        if namespace is not None:
            other = dict.get(Record.registry, namespace)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(f"namespace {namespace!r} is declared by {other} and {cls}")
            dict.__setitem__(Record.registry, namespace, cls)

    def key_value(self) -> str:
        """The primary key as one string (parts joined by ``/``)."""
        return "/".join(str(getattr(self, name)) for name in self.key)

    def to_row(self) -> dict[str, Any]:
        """The record as a row: datetimes stay datetimes, JSON columns become JSON text."""
        return self.model_dump(mode="python")


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Map one field annotation to (Arrow type, nullable)."""
    nullable = False
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        nullable = len(args) != len(get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unsupported union {annotation!r}")
        annotation, origin = args[0], get_origin(args[0])
    if origin is Annotated:
        base, *extras = get_args(annotation)
        if any(isinstance(extra, _JsonColumn) for extra in extras):
            return pa.string(), True
        arrow, inner_nullable = _arrow_type(base)
        return arrow, nullable or inner_nullable
    if annotation is str:
        return pa.string(), nullable
    if annotation is bool:
        return pa.bool_(), nullable
    if annotation is int:
        return pa.int64(), nullable
    if annotation is float:
        return pa.float64(), nullable
    if annotation is datetime:
        return pa.timestamp("us", tz="UTC"), nullable
    if origin is list:
        (item,) = get_args(annotation)
        return pa.list_(_arrow_type(item)[0]), nullable
    if origin is dict:
        key, value = get_args(annotation)
        return pa.map_(_arrow_type(key)[0], _arrow_type(value)[0]), nullable
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(_fields(annotation)), nullable
    raise TypeError(f"no Arrow type for {annotation!r}")


def _fields(model: type[BaseModel]) -> list[pa.Field]:
    hints = typing.get_type_hints(model, include_extras=True)
    fields = []
    for name in model.model_fields:
        arrow, nullable = _arrow_type(hints[name])
        fields.append(pa.field(name, arrow, nullable=nullable))
    return fields


@cache
def arrow_schema(record_type: type[Record]) -> pa.Schema:
    """The Parquet schema of a namespace: the record's fields, then the metadata columns."""
    fields = _fields(record_type)
    fields += [pa.field(name, arrow, nullable=False) for name, arrow in METADATA_FIELDS.items()]
    return pa.schema(
        fields,
        metadata={"namespace": record_type.namespace, "schema_version": str(record_type.schema_version)},
    )
