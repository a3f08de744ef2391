"""S3Store tests against a real moto server, plus the ObjectStore contract tests that run
against both backends (the ``store`` fixture is parametrized over local and S3)."""

from __future__ import annotations

import io
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from crawler.storage import ObjectStore, open_store
from crawler.storage.s3 import S3Store
from tests.fakes.s3 import BUCKET, S3Server

MiB = 1024 * 1024

BAD_KEYS = [
    "",
    "/abs/key",
    "..",
    "../outside",
    "a/../../b",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "a/\x00b",
    ".tmp-123",
    "x" * 1025,
]


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def count_calls(store: S3Store, operation: str) -> list[int]:
    """Count real requests of one S3 operation via botocore's event hooks (no mocking)."""
    calls: list[int] = []
    store.client.meta.events.register(f"after-call.s3.{operation}", lambda **_: calls.append(1))
    return calls


# --------------------------------------------------------------------------------------
# The ObjectStore contract, for both backends
# --------------------------------------------------------------------------------------


def test_round_trip(store: ObjectStore) -> None:
    key = "npm/year=2026/month=11/day=25/batch_1764000000_ab12cd.ndjson"
    before = datetime.now(UTC) - timedelta(minutes=5)

    assert not store.exists(key)
    store.put_bytes(key, b'{"name": "left-pad"}\n', content_type="application/x-ndjson")

    assert store.exists(key)
    assert store.get_bytes(key) == b'{"name": "left-pad"}\n'
    [info] = list(store.list())
    assert info.key == key
    assert info.size == len(b'{"name": "left-pad"}\n')
    assert info.modified.tzinfo is not None
    assert before < info.modified < datetime.now(UTC) + timedelta(minutes=5)

    store.put_bytes(key, b"v2")  # overwrite
    assert store.get_bytes(key) == b"v2"

    store.delete([key, "npm/never-existed.ndjson"])  # missing keys are fine
    assert not store.exists(key)
    assert list(store.list()) == []
    with pytest.raises(KeyError) as excinfo:
        store.get_bytes(key)
    assert excinfo.value.args == (key,)


def test_empty_object(store: ObjectStore) -> None:
    store.put_bytes("npm/empty.ndjson", b"")
    assert store.exists("npm/empty.ndjson")
    assert store.get_bytes("npm/empty.ndjson") == b""
    assert [i.size for i in store.list()] == [0]


def test_put_file(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "upload.parquet"
    src.write_bytes(b"PAR1" + bytes(range(256)) * 10)
    store.put_file("pypi/year=2026/month=11/day=25/batch_1.parquet", src, content_type="application/parquet")
    assert store.get_bytes("pypi/year=2026/month=11/day=25/batch_1.parquet") == src.read_bytes()
    assert src.exists()  # the source is copied, not moved

    with pytest.raises(FileNotFoundError):
        store.put_file("pypi/missing.parquet", tmp_path / "does-not-exist")
    assert not store.exists("pypi/missing.parquet")


def test_list_prefix_is_a_string_prefix_and_sorted(store: ObjectStore) -> None:
    keys = [
        "npm/year=2026/month=11/day=25/batch_2.ndjson",
        "npm/year=2026/month=11/day=25/batch_1.ndjson",
        "npm/year=2026/month=12/day=01/batch_3.ndjson",
        "npm/_metadata/catalog.json",
        "npmx/other.ndjson",
        "pypi/a.ndjson",
        "a/b",
        "a.b",  # '.' sorts before '/', so a per-directory walk order would be wrong
        "ü/x",
    ]
    for key in keys:
        store.put_bytes(key, key.encode())

    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list("npm/")] == sorted(k for k in keys if k.startswith("npm/"))
    assert [i.key for i in store.list("npm")] == sorted(k for k in keys if k.startswith("npm"))
    assert [i.key for i in store.list("npm/year=2026/mo")] == sorted(k for k in keys if k.startswith("npm/year=2026/"))
    assert [i.key for i in store.list("npm/year=2026/month=11/day=25/batch_1")] == [
        "npm/year=2026/month=11/day=25/batch_1.ndjson"
    ]
    assert [i.key for i in store.list("npm/_metadata/catalog.json")] == ["npm/_metadata/catalog.json"]
    assert list(store.list("nothing/")) == []
    assert {i.key: i.size for i in store.list("a")} == {"a/b": 3, "a.b": 3}


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys_are_rejected_everywhere(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        store.get_bytes(key)
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.delete([key])
    with pytest.raises(ValueError):
        store.local_path(key)
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", ["/abs", "../", "a/../", "a//b", "a\\b"], ids=repr)
def test_invalid_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        store.list(prefix)


def test_delete_validates_every_key_before_deleting(store: ObjectStore) -> None:
    store.put_bytes("keep/me", b"x")
    with pytest.raises(ValueError):
        store.delete(["keep/me", "../escape"])
    assert store.exists("keep/me")


def test_delete_accepts_any_iterable(store: ObjectStore) -> None:
    for i in range(5):
        store.put_bytes(f"gen/{i}", b"x")
    store.delete(info.key for info in store.list("gen/"))
    assert list(store.list()) == []


def test_arrow_filesystem_reads_parquet(store: ObjectStore) -> None:
    table = pa.table({"name": ["left-pad", "lodash"], "downloads": [10, 20]})
    key = "npm/year=2026/month=11/day=25/batch_1764000000_ab12cd.parquet"
    store.put_bytes(key, parquet_bytes(table), content_type="application/vnd.apache.parquet")

    fs, base = store.arrow_filesystem()
    assert pq.read_table(base + "/" + key, filesystem=fs).equals(table)


def test_duckdb_queries_a_dataset_on_the_arrow_filesystem(store: ObjectStore) -> None:
    for day, rows in (("25", [1, 2]), ("26", [3])):
        key = f"npm/year=2026/month=11/day={day}/batch_{day}.parquet"
        store.put_bytes(key, parquet_bytes(pa.table({"n": rows})))
    store.put_bytes("npm/_metadata/catalog.json", b"{}")  # must not confuse the dataset

    fs, base = store.arrow_filesystem()
    dataset = ds.dataset(
        base + "/npm",
        filesystem=fs,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=True,
        ignore_prefixes=["_"],
    )
    con = duckdb.connect()
    try:
        con.register("npm", dataset)
        result = con.execute("SELECT day, sum(n) FROM npm GROUP BY day ORDER BY day").fetchall()
    finally:
        con.close()
    assert result == [(25, 3), (26, 3)]


def test_concurrent_use_from_threads(store: ObjectStore) -> None:
    payloads = {f"t/{i:03d}": bytes([i]) * (1000 + i) for i in range(64)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda kv: store.put_bytes(*kv), payloads.items()))
        # Many writers racing on one key: the survivor must be one complete payload.
        list(pool.map(lambda i: store.put_bytes("t/shared", bytes([i]) * 5000), range(32)))
        read = dict(zip(payloads, pool.map(store.get_bytes, payloads), strict=True))
    assert read == payloads
    shared = store.get_bytes("t/shared")
    assert len(shared) == 5000 and len(set(shared)) == 1
    assert len(list(store.list("t/"))) == 65


# --------------------------------------------------------------------------------------
# S3-specific behaviour
# --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(
    ("uri", "bucket", "prefix", "normalized"),
    [
        ("s3://data-ingestion", "data-ingestion", "", "s3://data-ingestion"),
        ("s3://data-ingestion/", "data-ingestion", "", "s3://data-ingestion"),
        ("s3://data-ingestion/prod", "data-ingestion", "prod", "s3://data-ingestion/prod"),
        ("S3://data-ingestion/a/b/", "data-ingestion", "a/b", "s3://data-ingestion/a/b"),
        ("  s3://data-ingestion/x  ", "data-ingestion", "x", "s3://data-ingestion/x"),
    ],
)
def test_open_store_s3_uris(uri: str, bucket: str, prefix: str, normalized: str) -> None:
    store = open_store(uri)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.uri) == (bucket, prefix, normalized)
    assert store.local_path("a/b") is None


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(
    "uri", ["s3://", "s3:///prefix", "s3://b/../x", "s3://b/a//c", "s3://b/x?versionId=1", "s3://b:99/x"]
)
def test_open_store_rejects_bad_s3_uris(uri: str) -> None:
    with pytest.raises(ValueError):
        open_store(uri)


@pytest.mark.usefixtures("s3_env")
def test_credentials_in_s3_uri_are_rejected_and_not_echoed() -> None:
    with pytest.raises(ValueError) as excinfo:
        open_store("s3://AKIAEXAMPLE:topsecret@bucket/prefix")
    assert "topsecret" not in str(excinfo.value)


def test_keys_live_under_the_uri_prefix(s3_store: S3Store) -> None:
    s3_store.put_bytes("npm/_metadata/catalog.json", b"{}", content_type="application/json")
    raw = s3_store.client.list_objects_v2(Bucket=BUCKET, Prefix=s3_store.prefix + "/")
    assert [o["Key"] for o in raw["Contents"]] == [f"{s3_store.prefix}/npm/_metadata/catalog.json"]
    head = s3_store.client.head_object(Bucket=BUCKET, Key=f"{s3_store.prefix}/npm/_metadata/catalog.json")
    assert head["ContentType"] == "application/json"


def test_prefixes_isolate_stores(s3_env: S3Server) -> None:
    name = f"test-{uuid.uuid4().hex}"
    short, longer = open_store(f"s3://{BUCKET}/{name}"), open_store(f"s3://{BUCKET}/{name}x")
    try:
        short.put_bytes("k", b"short")
        longer.put_bytes("k", b"long")
        assert [i.key for i in short.list()] == ["k"]
        assert short.get_bytes("k") == b"short"
        assert longer.get_bytes("k") == b"long"
    finally:
        short.delete(["k"])
        longer.delete(["k"])


def test_listing_and_deleting_more_than_1000_objects(s3_store: S3Store) -> None:
    keys = [f"npm/year=2026/month=11/day=25/batch_{i:05d}.ndjson" for i in range(1050)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda k: s3_store.put_bytes(k, b"{}\n"), keys))
    s3_store.put_bytes("pypi/other.ndjson", b"{}\n")

    list_calls = count_calls(s3_store, "ListObjectsV2")
    listed = [i.key for i in s3_store.list("npm/")]
    assert listed == keys  # zero-padded, so already in key order
    assert len(list_calls) == 2  # really paginated: 1000 + 50

    delete_calls = count_calls(s3_store, "DeleteObjects")
    s3_store.delete(keys)
    assert len(delete_calls) == 2  # DeleteObjects takes at most 1000 keys
    assert [i.key for i in s3_store.list()] == ["pypi/other.ndjson"]


def test_page_size_option(s3_uri: str) -> None:
    store = open_store(s3_uri, page_size=10)
    assert isinstance(store, S3Store)
    try:
        for i in range(25):
            store.put_bytes(f"p/{i:02d}", b"x")
        calls = count_calls(store, "ListObjectsV2")
        assert [i.key for i in store.list("p/")] == [f"p/{i:02d}" for i in range(25)]
        assert len(calls) == 3
    finally:
        store.delete(f"p/{i:02d}" for i in range(25))


@pytest.mark.parametrize("method", ["put_bytes", "put_file"])
def test_large_objects_are_uploaded_multipart(s3_uri: str, tmp_path: Path, method: str) -> None:
    store = open_store(s3_uri, multipart_threshold=5 * MiB)
    assert isinstance(store, S3Store)
    data = uuid.uuid4().bytes * (11 * MiB // 16)  # 11 MiB
    small = b"small object"
    try:
        if method == "put_bytes":
            store.put_bytes("big.parquet", data, content_type="application/vnd.apache.parquet")
        else:
            src = tmp_path / "big.parquet"
            src.write_bytes(data)
            store.put_file("big.parquet", src, content_type="application/vnd.apache.parquet")
        store.put_bytes("small.json", small)

        assert store.get_bytes("big.parquet") == data
        head = store.client.head_object(Bucket=BUCKET, Key=f"{store.prefix}/big.parquet")
        # A multipart ETag is "<md5 of part md5s>-<part count>": 5 + 5 + 1 MiB parts.
        assert head["ETag"].strip('"').endswith("-3")
        assert head["ContentType"] == "application/vnd.apache.parquet"
        assert head["ContentLength"] == len(data)
        small_head = store.client.head_object(Bucket=BUCKET, Key=f"{store.prefix}/small.json")
        assert "-" not in small_head["ETag"]
    finally:
        store.delete(["big.parquet", "small.json"])


def test_missing_bucket_is_an_error_not_a_missing_key(s3_env: S3Server) -> None:
    store = open_store(f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}")
    with pytest.raises(ClientError) as excinfo:
        store.get_bytes("k")
    assert not isinstance(excinfo.value, KeyError)
    assert excinfo.value.response["Error"]["Code"] == "NoSuchBucket"


def test_region_resolution(s3_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def region(**options: Any) -> str:
        store = open_store(s3_uri, **options)
        assert isinstance(store, S3Store)
        return store.client.meta.region_name

    assert region() == "us-east-1"  # AWS_DEFAULT_REGION from the fixture
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert region() == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "auto")  # what Cloudflare R2 documents
    assert region() == "auto"
    assert region(region="eu-central-1") == "eu-central-1"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert region() == "us-east-1"


def test_r2_style_region_auto_works_end_to_end(s3_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "auto")
    store = open_store(s3_uri)
    try:
        store.put_bytes("r2/t.parquet", parquet_bytes(pa.table({"x": [1]})))
        fs, base = store.arrow_filesystem()
        assert pq.read_table(base + "/r2/t.parquet", filesystem=fs).column("x").to_pylist() == [1]
    finally:
        store.delete(["r2/t.parquet"])


def test_endpoint_url_option_overrides_environment(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # wrong on purpose
    name = f"test-{uuid.uuid4().hex}"
    store = open_store(f"s3://{BUCKET}/{name}", endpoint_url=s3_env.endpoint_url)
    assert isinstance(store, S3Store)
    assert store.client.meta.endpoint_url == s3_env.endpoint_url
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"
    fs, base = store.arrow_filesystem()
    assert fs.get_file_info(base + "/k").size == 1
    store.delete(["k"])


def test_generic_aws_endpoint_url_is_honoured(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint_url)
    store = open_store(f"s3://{BUCKET}/test-{uuid.uuid4().hex}")
    assert isinstance(store, S3Store)
    assert store.client.meta.endpoint_url == s3_env.endpoint_url
    assert list(store.list()) == []


def test_arrow_filesystem_mirrors_client_settings(s3_store: S3Store) -> None:
    fs, base = s3_store.arrow_filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    assert fs.region == "us-east-1"
    assert base == f"{BUCKET}/{s3_store.prefix}"
    # Writing through pyarrow lands where the store reads.
    with fs.open_output_stream(base + "/via-arrow.bin") as out:
        out.write(b"written by pyarrow")
    assert s3_store.get_bytes("via-arrow.bin") == b"written by pyarrow"


def test_retries_are_bounded_by_max_attempts(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on the discard port of loopback, so every attempt fails to connect.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    store = open_store(f"s3://{BUCKET}/x", max_attempts=2)
    assert isinstance(store, S3Store)
    assert store.client.meta.config.retries == {"total_max_attempts": 2, "mode": "standard"}
    attempts: list[int] = []
    store.client.meta.events.register("before-send.s3.GetObject", lambda **_: attempts.append(1))
    with pytest.raises(EndpointConnectionError):
        store.get_bytes("k")
    assert len(attempts) == 2  # the first try plus one retry, not 1 + 2


@pytest.mark.usefixtures("s3_env")
@pytest.mark.parametrize(
    "options", [{"multipart_threshold": 0}, {"max_attempts": 0}, {"page_size": 0}, {"page_size": 1001}]
)
def test_invalid_s3_options(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        open_store(f"s3://{BUCKET}/x", **options)


def test_boto3_client_is_shared_safely(s3_store: S3Store) -> None:
    # One client, many threads: mixed operations must not interfere.
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for j in range(10):
                key = f"w{n}/{j}"
                s3_store.put_bytes(key, key.encode())
                assert s3_store.get_bytes(key) == key.encode()
                assert s3_store.exists(key)
            assert len(list(s3_store.list(f"w{n}/"))) == 10
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(s3_store.list())) == 80
