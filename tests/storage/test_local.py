"""LocalStore and open_store tests (no server needed)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO

import pyarrow.fs as pafs
import pytest

import crawler.storage.local as local_module
from crawler.storage import LocalStore, open_store
from crawler.storage.base import TEMP_PREFIX


def all_files(root: Path) -> list[str]:
    """Every file below ``root`` (including temp files), relative, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------
# open_store
# --------------------------------------------------------------------------------------


def test_open_store_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("./data")
    assert isinstance(store, LocalStore)
    assert (tmp_path / "data").is_dir()  # created if missing
    assert store.root == os.path.realpath(tmp_path / "data")
    assert store.uri == Path(store.root).as_uri()
    assert store.uri.startswith("file:///")


def test_open_store_absolute_path_and_file_uris(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "store dir"
    by_path = open_store(str(target))
    by_uri = open_store(target.as_uri())  # file:///.../store%20dir
    by_localhost = open_store("file://localhost" + target.as_posix())
    for store in (by_path, by_uri, by_localhost):
        assert isinstance(store, LocalStore)
        assert store.root == os.path.realpath(target)
        assert store.uri == by_path.uri
    by_path.put_bytes("k", b"shared")
    assert by_uri.get_bytes("k") == b"shared"


def test_open_store_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("~/crawl-data")
    assert isinstance(store, LocalStore)
    assert store.root == os.path.realpath(tmp_path / "crawl-data")


@pytest.mark.parametrize(
    "uri", ["ftp://x", "http://example.com/data", "gs://bucket/x", "file://relative/path", "", "   "]
)
def test_open_store_rejects_other_uris(uri: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        open_store(uri)
    message = str(excinfo.value)
    assert "STORAGE_URI" in message
    if "://" not in uri or uri.startswith("ftp"):
        assert "s3://" in message and "file://" in message  # names the accepted forms


def test_open_store_does_not_echo_credentials() -> None:
    with pytest.raises(ValueError) as excinfo:
        open_store("ftp://user:hunter2@host/data")
    assert "hunter2" not in str(excinfo.value)


def test_open_store_options(tmp_path: Path) -> None:
    # S3 options are accepted (and ignored) for local stores, so settings can always pass them.
    store = open_store(str(tmp_path / "s"), multipart_threshold=5 * 1024 * 1024, max_attempts=3)
    assert isinstance(store, LocalStore)
    with pytest.raises(TypeError, match="bogus"):
        open_store(str(tmp_path / "s"), bogus=1)


def test_root_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        LocalStore(tmp_path / "file")


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def test_write_leaves_no_temp_files(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    local_store.put_bytes("npm/year=2026/month=11/day=25/batch_1.ndjson", b"{}\n")
    local_store.put_bytes("npm/year=2026/month=11/day=25/batch_1.ndjson", b"{}\n{}\n")
    assert all_files(root) == ["npm/year=2026/month=11/day=25/batch_1.ndjson"]


def test_file_permissions_follow_umask(local_store: LocalStore) -> None:
    umask = os.umask(0)
    os.umask(umask)
    local_store.put_bytes("k", b"x")
    assert os.stat(local_store.local_path("k") or "").st_mode & 0o777 == 0o666 & ~umask


def test_crashed_put_bytes_leaves_no_partial_object(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(local_store.root)
    local_store.put_bytes("npm/catalog.json", b"old complete version")

    def failing_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(local_module.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        local_store.put_bytes("npm/catalog.json", b"new version that never lands")
    with pytest.raises(OSError, match="disk full"):
        local_store.put_bytes("npm/new.json", b"brand new")
    monkeypatch.undo()

    assert local_store.get_bytes("npm/catalog.json") == b"old complete version"
    assert not local_store.exists("npm/new.json")
    assert all_files(root) == ["npm/catalog.json"]


def test_crash_midway_through_put_file_leaves_no_partial_object(
    local_store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(local_store.root)
    src = tmp_path / "batch.parquet"
    src.write_bytes(b"A" * 100_000)

    def half_copy(fsrc: IO[bytes], fdst: IO[bytes], length: int = 0) -> None:
        fdst.write(fsrc.read(50_000))
        fdst.flush()  # the partial data really is on disk in the temp file
        raise KeyboardInterrupt  # even a BaseException must clean up

    monkeypatch.setattr(local_module.shutil, "copyfileobj", half_copy)
    with pytest.raises(KeyboardInterrupt):
        local_store.put_file("npm/batch.parquet", src)
    monkeypatch.undo()

    assert not local_store.exists("npm/batch.parquet")
    assert list(local_store.list()) == []
    assert [f for f in all_files(root) if TEMP_PREFIX in f] == []


def test_readers_never_see_a_partial_object(local_store: LocalStore) -> None:
    versions = [b"a" * 3_000_000, b"b" * 1_000_000]
    local_store.put_bytes("hot", versions[0])
    stop = threading.Event()
    seen: set[bytes] = set()

    def reader() -> None:
        while not stop.is_set():
            data = local_store.get_bytes("hot")
            seen.add(data[:1] + str(len(data)).encode())
            assert data in versions

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            local_store.put_bytes("hot", versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert seen <= {b"a3000000", b"b1000000"}


def test_stray_temp_files_are_not_listed(local_store: LocalStore) -> None:
    local_store.put_bytes("npm/a.ndjson", b"x")
    # What a killed process would leave behind.
    (Path(local_store.root) / "npm" / f"{TEMP_PREFIX}deadbeef").write_bytes(b"partial")
    assert [i.key for i in local_store.list()] == ["npm/a.ndjson"]
    with pytest.raises(ValueError):
        local_store.get_bytes(f"npm/{TEMP_PREFIX}deadbeef")


# --------------------------------------------------------------------------------------
# Paths and traversal
# --------------------------------------------------------------------------------------


def test_keys_map_to_files_under_the_root(local_store: LocalStore) -> None:
    key = "npm/year=2026/month=11/day=25/batch_1764000000_ab12cd.ndjson"
    local_store.put_bytes(key, b"data")
    path = local_store.local_path(key)
    assert path == os.path.join(local_store.root, *key.split("/"))
    assert Path(path).read_bytes() == b"data"

    fs, base = local_store.arrow_filesystem()
    assert isinstance(fs, pafs.LocalFileSystem)
    assert base + "/" + key == Path(path).as_posix()
    with fs.open_input_stream(base + "/" + key) as f:
        assert f.read() == b"data"


def test_traversal_is_impossible(local_store: LocalStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not read")
    for key in ("../secret.txt", "npm/../../secret.txt", "/" + str(secret).lstrip("/")):
        with pytest.raises(ValueError):
            local_store.get_bytes(key)
        with pytest.raises(ValueError):
            local_store.put_bytes(key, b"overwritten")
    assert secret.read_bytes() == b"do not read"


def test_symlinks_cannot_lead_outside_the_root(local_store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not read")
    os.symlink(outside, Path(local_store.root) / "escape")
    os.symlink(outside / "secret.txt", Path(local_store.root) / "link.txt")

    with pytest.raises(ValueError):
        local_store.get_bytes("escape/secret.txt")
    with pytest.raises(ValueError):
        local_store.put_bytes("escape/new.txt", b"x")
    with pytest.raises(ValueError):
        local_store.get_bytes("link.txt")
    with pytest.raises(ValueError):
        list(local_store.list("escape/"))
    assert not (outside / "new.txt").exists()
    # The listing neither follows nor reports symlinks.
    assert list(local_store.list()) == []


def test_root_may_itself_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    store = LocalStore(tmp_path / "alias")
    store.put_bytes("a/b", b"x")
    assert (real / "a" / "b").read_bytes() == b"x"
    assert [i.key for i in store.list()] == ["a/b"]


def test_delete_prunes_empty_directories_but_keeps_the_root(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    local_store.put_bytes("npm/year=2026/month=11/day=25/a", b"x")
    local_store.put_bytes("npm/year=2026/month=11/day=26/b", b"x")
    local_store.delete(["npm/year=2026/month=11/day=25/a"])
    assert not (root / "npm/year=2026/month=11/day=25").exists()
    assert (root / "npm/year=2026/month=11/day=26/b").exists()
    local_store.delete(["npm/year=2026/month=11/day=26/b"])
    assert root.is_dir()
    assert list(root.iterdir()) == []


def test_directories_are_not_objects(local_store: LocalStore) -> None:
    local_store.put_bytes("npm/a/b", b"x")
    assert not local_store.exists("npm/a")
    with pytest.raises(KeyError):
        local_store.get_bytes("npm/a")
    local_store.delete(["npm/a"])  # a directory is simply "not an object"
    assert local_store.exists("npm/a/b")


def test_concurrent_writes_and_deletes_in_one_directory(local_store: LocalStore) -> None:
    # delete() prunes directories that put_bytes() may be about to write into.
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        try:
            for i in range(100):
                key = f"npm/day=25/{n}-{i}"
                local_store.put_bytes(key, b"x")
                local_store.delete([key])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list(local_store.list()) == []
