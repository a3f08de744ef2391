"""An object store backed by a local folder."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .base import TEMP_PREFIX, ObjectInfo, ObjectStore, validate_key, validate_prefix

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["LocalStore"]

_COPY_BUFFER = 1024 * 1024
# A concurrent delete() prunes empty directories; a writer that loses that race simply
# recreates the directory. Plenty of retries: each lost race means another thread progressed.
_MKDIR_ATTEMPTS = 50


class LocalStore(ObjectStore):
    """Objects are files under ``root``; key ``a/b/c`` is the file ``root/a/b/c``.

    Writes go to a temp file (``.tmp-*``) in the destination directory, are fsynced and
    then renamed over the destination with ``os.replace``, so readers never see a partial
    object. The store holds no mutable state, so it is thread-safe.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(os.path.expanduser(os.fspath(root)))
        path.mkdir(parents=True, exist_ok=True)
        # Resolve symlinks once so the containment check in _path() compares real paths.
        self._root = os.path.realpath(path)
        if not os.path.isdir(self._root):
            raise NotADirectoryError(f"storage root {self._root!r} is not a directory")
        self.uri = Path(self._root).as_uri()

    @property
    def root(self) -> str:
        """Absolute, symlink-free path of the store's folder."""
        return self._root

    # -- helpers -----------------------------------------------------------------------

    def _path(self, key: str) -> str:
        validate_key(key)
        path = os.path.join(self._root, *key.split("/"))
        # Key validation already rules out '..'; this also stops symlinks inside the
        # folder from leading outside it.
        real = os.path.realpath(path)
        if os.path.commonpath([self._root, real]) != self._root:
            raise ValueError(f"invalid key {key!r}: resolves outside the store root")
        return path

    def _atomic_write(self, path: str, write: Callable[[IO[bytes]], object]) -> None:
        directory = os.path.dirname(path)
        fd = -1
        tmp = ""
        for attempt in range(_MKDIR_ATTEMPTS):
            tmp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
            try:
                os.makedirs(directory, exist_ok=True)
                # O_EXCL: never reuse someone else's temp file; mode 0o666 lets the umask
                # decide the final permissions (mkstemp would force 0o600).
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                break
            except (FileNotFoundError, FileExistsError):
                # makedirs() lost a race with a concurrent pruning rmdir(): try again. A
                # persistent failure (e.g. a path segment is a file) is re-raised.
                if attempt == _MKDIR_ATTEMPTS - 1:
                    raise
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir(directory)

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        # Makes the rename itself durable; best effort, some filesystems refuse it.
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    # -- ObjectStore ---------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write ``data`` to the key's file atomically. ``content_type`` is ignored locally."""
        self._atomic_write(self._path(key), lambda f: f.write(data))

    def put_file(self, key: str, path: str | os.PathLike[str], content_type: str | None = None) -> None:
        """Copy the file at ``path`` to the key's file atomically; the source is left in place."""
        dest = self._path(key)
        with open(path, "rb") as src:
            self._atomic_write(dest, lambda f: shutil.copyfileobj(src, f, _COPY_BUFFER))

    def get_bytes(self, key: str) -> bytes:
        """Return the file's contents; ``KeyError(key)`` if it does not exist."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        """Return whether a regular file exists for ``key``."""
        return os.path.isfile(self._path(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Return the objects under ``prefix`` sorted by key; temp files are skipped."""
        validate_prefix(prefix)
        # Only walk the deepest directory fully named by the prefix.
        dir_part = prefix.rpartition("/")[0]
        start = os.path.join(self._root, *dir_part.split("/")) if dir_part else self._root
        if os.path.commonpath([self._root, os.path.realpath(start)]) != self._root:
            raise ValueError(f"invalid prefix {prefix!r}: resolves outside the store root")

        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self._root)
            key_dir = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            # Prune subtrees that cannot contain a match.
            dirnames[:] = sorted(
                d for d in dirnames if (key_dir + d + "/").startswith(prefix) or prefix.startswith(key_dir + d + "/")
            )
            for name in filenames:
                key = key_dir + name
                if name.startswith(TEMP_PREFIX) or not key.startswith(prefix):
                    continue
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted concurrently
                    continue
                if not stat.S_ISREG(st.st_mode):  # symlinks, sockets, ...
                    continue
                found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        # Sort by the whole key: a per-directory walk order would put "a/b" before "a.b".
        found.sort(key=lambda info: info.key)
        return iter(found)

    def delete(self, keys: Iterable[str]) -> None:
        """Remove the keys' files (missing ones are ignored) and prune emptied directories."""
        paths = [self._path(key) for key in keys]  # validate everything first
        for path in paths:
            try:
                os.unlink(path)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            parent = os.path.dirname(path)
            while parent != self._root and parent.startswith(self._root):
                try:
                    os.rmdir(parent)  # fails (and stops) as soon as a directory is not empty
                except OSError:
                    break
                parent = os.path.dirname(parent)

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """Return ``(pyarrow.fs.LocalFileSystem(), absolute root)``."""
        from pyarrow import fs as pafs

        return pafs.LocalFileSystem(), Path(self._root).as_posix()

    def local_path(self, key: str) -> str | None:
        """Return the absolute path of the key's file (it may not exist)."""
        return self._path(key)
