"""The object-store interface shared by the local-folder and S3 backends.

Keys are ``/``-separated relative names (how data objects are named is :mod:`crawler.storage.layout`'s
business, not this interface's). They are validated the same way by every backend, so a key that works
locally also works on S3 and vice versa.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["MAX_KEY_BYTES", "TEMP_PREFIX", "ObjectInfo", "ObjectStore", "validate_key", "validate_prefix"]

# Name prefix of in-progress local writes. Key segments may not start with it, so a
# temp file can never be mistaken for (or collide with) a real object.
TEMP_PREFIX = ".tmp-"

# S3 (and R2) reject keys longer than 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object as returned by :meth:`ObjectStore.list`."""

    key: str
    size: int
    modified: datetime  # timezone-aware (UTC)


def _check_chars(value: str, what: str) -> None:
    if "\\" in value:
        raise ValueError(f"invalid {what} {value!r}: backslashes are not allowed, use '/'")
    # Control characters break S3's XML listings and terminal output alike.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"invalid {what} {value!r}: control characters are not allowed")


def _check_segment(segment: str, value: str, what: str) -> None:
    if segment == "":
        raise ValueError(f"invalid {what} {value!r}: empty path segment")
    if segment in (".", ".."):
        raise ValueError(f"invalid {what} {value!r}: '.' and '..' segments are not allowed")
    if segment.startswith(TEMP_PREFIX):
        raise ValueError(f"invalid {what} {value!r}: segments starting with {TEMP_PREFIX!r} are reserved")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid object key, else raise ``ValueError``.

    A valid key is non-empty, relative (no leading ``/``), has no empty, ``.`` or ``..``
    segments, no backslashes or control characters, and is at most 1024 UTF-8 bytes.
    """
    if not isinstance(key, str):
        raise TypeError(f"object key must be str, not {type(key).__name__}")
    if not key:
        raise ValueError("invalid key '': must not be empty")
    if key.startswith("/"):
        raise ValueError(f"invalid key {key!r}: must not start with '/'")
    _check_chars(key, "key")
    for segment in key.split("/"):
        _check_segment(segment, key, "key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"invalid key {key[:80]!r}...: longer than {MAX_KEY_BYTES} bytes")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged if it is a valid listing prefix, else raise ``ValueError``.

    A prefix is a plain string prefix of keys (as in S3): ``""``, ``"ns/"`` and
    ``"ns/ab"`` are all valid. Every complete segment follows the key rules; the
    last, possibly partial, segment may be empty.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    if prefix.startswith("/"):
        raise ValueError(f"invalid prefix {prefix!r}: must not start with '/'")
    _check_chars(prefix, "prefix")
    for segment in prefix.split("/")[:-1]:
        _check_segment(segment, prefix, "prefix")
    return prefix


class ObjectStore(abc.ABC):
    """A flat key -> bytes store (a local folder or an S3 bucket/prefix).

    Implementations are safe to call concurrently from several threads.
    """

    #: Normalized URI of the store, e.g. ``file:///srv/data`` or ``s3://bucket/prefix``.
    uri: str

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key`` atomically: readers see the old object or the new one."""

    @abc.abstractmethod
    def put_file(self, key: str, path: str | os.PathLike[str], content_type: str | None = None) -> None:
        """Store the contents of the local file ``path`` under ``key`` atomically."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the object's contents; raise ``KeyError(key)`` if it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, sorted by key."""

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete the given objects; keys that do not exist are ignored.

        All keys are validated before anything is deleted.
        """

    @abc.abstractmethod
    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """Return ``(filesystem, base)`` such that ``base + "/" + key`` addresses an object on it."""

    @abc.abstractmethod
    def local_path(self, key: str) -> str | None:
        """Return the filesystem path of ``key`` for local stores, ``None`` for remote ones."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
