"""``keep_file``: a bulk file is hard-linked into a local store (no copy), uploaded to any other."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from crawler.downloaders import files
from crawler.downloaders.files import keep_file
from crawler.storage import LocalStore


def test_a_local_store_gets_a_link_not_a_copy(tmp_path):
    store = LocalStore(str(tmp_path / "data"))
    source = tmp_path / "download.part"
    source.write_bytes(b"zone" * 1000)
    source.chmod(0o600)  # as the download handler's temporary files
    keep_file(store, "zones/x/x-2026-11-01.zone.gz", str(source), "application/gzip")
    kept = Path(store.local_path("zones/x/x-2026-11-01.zone.gz"))
    assert os.path.samefile(kept, source) and source.stat().st_nlink == 2
    assert kept.stat().st_mode & 0o777 == 0o666 & ~files._umask(), "readable as the store's other files"
    source.unlink()  # the download's own name goes; the stored file stays
    assert kept.read_bytes() == b"zone" * 1000
    assert [info.key for info in store.list("zones/")] == ["zones/x/x-2026-11-01.zone.gz"]


def test_a_link_replaces_an_earlier_file_of_the_key(tmp_path):
    store = LocalStore(str(tmp_path / "data"))
    store.put_bytes("zones/x/a.gz", b"old")
    source = tmp_path / "new.part"
    source.write_bytes(b"new")
    keep_file(store, "zones/x/a.gz", str(source), "application/gzip")
    assert store.get_bytes("zones/x/a.gz") == b"new"
    assert sorted(p.name for p in Path(store.local_path("zones/x/a.gz")).parent.iterdir()) == ["a.gz"]


def test_without_links_the_file_is_copied(tmp_path, monkeypatch):
    def cross_device(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "link", cross_device)
    store = LocalStore(str(tmp_path / "data"))
    source = tmp_path / "download.part"
    source.write_bytes(b"zone")
    keep_file(store, "zones/x/a.gz", str(source), "application/gzip")
    assert store.get_bytes("zones/x/a.gz") == b"zone" and source.stat().st_nlink == 1


def test_a_remote_store_gets_an_upload(tmp_path):
    uploads: list[tuple[str, str, str]] = []

    class Remote:
        def local_path(self, key: str) -> None:
            return None

        def put_file(self, key: str, path: str, content_type: str) -> None:
            uploads.append((key, path, content_type))

    keep_file(Remote(), "zones/x/a.gz", str(tmp_path / "f"), "application/gzip")  # type: ignore[arg-type]
    assert uploads == [("zones/x/a.gz", str(tmp_path / "f"), "application/gzip")]


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    yield
    assert not [p for p in tmp_path.rglob(".tmp-*")], "no temporary name is left behind"
