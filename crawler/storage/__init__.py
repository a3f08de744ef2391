"""Object storage for crawl output: a local folder or an S3-compatible bucket.

Use :func:`open_store` with the ``STORAGE_URI`` setting::

    store = open_store("s3://data-ingestion/prod")
    store.put_bytes("ns/_metadata/catalog.json", b"{}", content_type="application/json")
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .base import ObjectInfo, ObjectStore, validate_key, validate_prefix
from .local import LocalStore

if TYPE_CHECKING:
    from .s3 import S3Store

__all__ = ["LocalStore", "ObjectInfo", "ObjectStore", "S3Store", "open_store", "validate_key", "validate_prefix"]

# Keyword options understood by S3Store. LocalStore accepts and ignores them, so callers
# can pass the same settings whichever backend the URI selects.
S3_OPTIONS = frozenset(
    {"endpoint_url", "region", "multipart_threshold", "max_attempts", "page_size", "connect_timeout", "read_timeout"}
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_ACCEPTED = "a local path (./data, /abs/path), file:///abs/path, or s3://bucket[/prefix]"


def __getattr__(name: str) -> Any:
    # Import boto3 only when S3 is actually used.
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _redact(uri: str) -> str:
    # An unsupported URI may still contain user:password@ - never echo that.
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1***@", uri)


def _file_uri_path(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"invalid STORAGE_URI {_redact(uri)!r}: file:// URIs must be absolute, like file:///abs/path")
    if parts.query or parts.fragment:
        raise ValueError(f"invalid STORAGE_URI {_redact(uri)!r}: file:// URIs take no query or fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"invalid STORAGE_URI {_redact(uri)!r}: file:// URIs must be absolute, like file:///abs/path")
    return path


def open_store(uri: str, **options: Any) -> ObjectStore:
    """Open the store named by a ``STORAGE_URI`` value.

    * ``./data``, ``/abs/path``, ``~/data`` or ``file:///abs/path`` -> :class:`LocalStore`
      (the folder is created if missing);
    * ``s3://bucket[/prefix]`` -> :class:`S3Store`, configured from the AWS environment.

    ``options`` (``endpoint_url``, ``region``, ``multipart_threshold``, ``max_attempts``,
    ``page_size``, ``connect_timeout``, ``read_timeout``) are passed to :class:`S3Store` and ignored for local stores.
    Raises ``ValueError`` for any other URI.
    """
    unknown = set(options) - S3_OPTIONS
    if unknown:
        raise TypeError(f"unknown storage option(s): {', '.join(sorted(unknown))}")
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"STORAGE_URI is empty: expected {_ACCEPTED}")
    uri = uri.strip()
    match = _SCHEME.match(uri)
    if match is None:
        return LocalStore(uri)
    scheme = match.group(1).lower()
    if scheme == "file":
        return LocalStore(_file_uri_path(uri))
    if scheme == "s3":
        from .s3 import S3Store

        return S3Store(uri, **options)
    raise ValueError(f"unsupported STORAGE_URI {_redact(uri)!r}: expected {_ACCEPTED}")
