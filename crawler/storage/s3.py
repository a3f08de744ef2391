"""An object store backed by an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, moto).

Configuration comes from the standard AWS environment, read by boto3 itself:

* credentials: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``),
  or any other source of the boto3 credential chain (profiles, ...);
* endpoint: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (for R2:
  ``https://<account_id>.r2.cloudflarestorage.com``), unless ``endpoint_url`` is passed;
* region: the ``region`` argument, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION`` (or the
  profile's region), else ``us-east-1``. ``us-east-1`` is the fallback because it is valid
  for AWS and moto, and R2 treats it as an alias of its ``auto`` region. Setting
  ``AWS_REGION=auto`` for R2 works as well.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import MAX_KEY_BYTES, ObjectInfo, ObjectStore, validate_key, validate_prefix

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["DEFAULT_REGION", "S3Store", "parse_s3_uri"]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_REGION = "us-east-1"
DEFAULT_MULTIPART_THRESHOLD = 8 * MiB
DEFAULT_MAX_ATTEMPTS = 5
#: botocore's own defaults: one try waits this long to connect, and for the next bytes of an answer
DEFAULT_CONNECT_TIMEOUT = 60.0
DEFAULT_READ_TIMEOUT = 60.0
DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys per request
MAX_PAGE_SIZE = 1000  # ListObjectsV2 returns at most 1000 keys per page

# Error codes meaning "this key does not exist" (HeadObject has no body, hence "404").
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/optional/prefix`` into ``(bucket, prefix)``; the prefix has no slashes at the ends."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "s3":
        raise ValueError(f"not an s3:// URI: {uri!r}")
    if parts.query or parts.fragment:
        raise ValueError("s3:// URI must not have a query string or fragment")
    bucket = parts.netloc
    if not bucket:
        raise ValueError("s3:// URI has no bucket name: expected s3://bucket[/prefix]")
    if "@" in bucket or ":" in bucket:
        # Do not echo the URI: it may carry credentials.
        raise ValueError("s3:// URI must be s3://bucket[/prefix]; put credentials in AWS_* variables")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except ValueError as exc:
            raise ValueError(f"invalid prefix in s3:// URI: {exc}") from None
    return bucket, prefix


def _is_not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES


class S3Store(ObjectStore):
    """Objects live in ``bucket`` under ``prefix/``; key ``a/b`` is the S3 key ``prefix/a/b``.

    Uses a single boto3 client, which is thread-safe; everything else is immutable after
    ``__init__``, so the store may be used from many threads at once.
    """

    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        page_size: int = MAX_PAGE_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        """Create the client. ``endpoint_url``/``region`` override the AWS environment.

        ``multipart_threshold`` (bytes): uploads at least this large go multipart, in parts of
        this size (S3 raises parts below 5 MiB to 5 MiB). ``max_attempts``: total tries per
        request, first try included, botocore "standard" retry mode. ``page_size``: keys per
        ListObjectsV2 call. ``connect_timeout``/``read_timeout`` (seconds): how long one try waits to
        connect, and for the next bytes of an answer (a black-holed path costs at most this per try).
        """
        if multipart_threshold < 1:
            raise ValueError("multipart_threshold must be a positive number of bytes")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")

        self._bucket, self._prefix = parse_s3_uri(uri)
        self._key_prefix = self._prefix + "/" if self._prefix else ""
        self.uri = f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"
        self._max_attempts = max_attempts
        self._page_size = page_size

        session = boto3.session.Session()
        # boto3 only reads AWS_DEFAULT_REGION; most other AWS tools prefer AWS_REGION.
        resolved_region = region or os.environ.get("AWS_REGION") or session.region_name or DEFAULT_REGION
        config = Config(
            region_name=resolved_region,
            # total_max_attempts counts the first try too, like AWS_MAX_ATTEMPTS and other SDKs;
            # botocore's "max_attempts" key would mean retries (n + 1 tries in total).
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            # Worker threads plus multipart uploads share the pool; the default of 10
            # would make urllib3 discard and re-open connections under load.
            max_pool_connections=32,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / profile.
        self._client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        # Resolved once here (the client already did it); the object is safe to share and
        # handles refreshes itself.
        self._credentials = session.get_credentials()
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_threshold,
            max_concurrency=8,
            # The CRT transfer client behaves differently and is optional; pin the classic one.
            preferred_transfer_client="classic",
        )
        # Host only: an endpoint URL could embed user:password@.
        logger.debug(
            "S3 store %s: endpoint host=%s region=%s",
            self.uri,
            urlsplit(self._client.meta.endpoint_url).hostname,
            resolved_region,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def prefix(self) -> str:
        """Key prefix inside the bucket, without leading/trailing slashes ("" for none)."""
        return self._prefix

    @property
    def credentials(self) -> Any:
        """The store's AWS credentials, frozen (``access_key``, ``secret_key``, ``token``); ``None`` when
        anonymous. For other clients of the same bucket (pyarrow, PyIceberg)."""
        return self._credentials.get_frozen_credentials() if self._credentials is not None else None

    @property
    def client(self) -> Any:
        """The underlying boto3 S3 client (thread-safe)."""
        return self._client

    # -- helpers -----------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        full = self._key_prefix + validate_key(key)
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"invalid key {key[:80]!r}...: with the store prefix it exceeds {MAX_KEY_BYTES} bytes")
        return full

    @staticmethod
    def _extra_args(content_type: str | None) -> dict[str, str]:
        return {"ContentType": content_type} if content_type else {}

    # -- ObjectStore ---------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Upload ``data``: one PutObject below the multipart threshold, else a multipart upload.

        Either way S3 makes the object visible only once it is complete.
        """
        full = self._full_key(key)
        extra = self._extra_args(content_type)
        if memoryview(data).nbytes < self._transfer.multipart_threshold:
            self._client.put_object(Bucket=self._bucket, Key=full, Body=bytes(data), **extra)
        else:
            self._client.upload_fileobj(
                io.BytesIO(data), self._bucket, full, ExtraArgs=extra or None, Config=self._transfer
            )

    def put_file(self, key: str, path: str | os.PathLike[str], content_type: str | None = None) -> None:
        """Upload a local file (multipart above the threshold, parts sent in parallel)."""
        full = self._full_key(key)
        path = os.fspath(path)
        if not os.path.isfile(path):
            # s3transfer would report this less clearly, from a worker thread.
            raise FileNotFoundError(path)
        self._client.upload_file(
            path, self._bucket, full, ExtraArgs=self._extra_args(content_type) or None, Config=self._transfer
        )

    def get_bytes(self, key: str) -> bytes:
        """Download the object; ``KeyError(key)`` if it does not exist."""
        full = self._full_key(key)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=full)
        except ClientError as exc:
            if _is_not_found(exc):
                raise KeyError(key) from None
            raise
        with contextlib.closing(response["Body"]) as body:
            return body.read()

    def exists(self, key: str) -> bool:
        """HeadObject; note a missing *bucket* also answers 404 and thus ``False``."""
        full = self._full_key(key)
        try:
            self._client.head_object(Bucket=self._bucket, Key=full)
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Stream the objects under ``prefix`` (paginated ListObjectsV2, already key-ordered).

        S3 orders keys by UTF-8 bytes, which matches Python's ``str`` ordering.
        """
        validate_prefix(prefix)  # eagerly, not on the first next()
        return self._list(self._key_prefix + prefix)

    def _list(self, full_prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self._bucket, Prefix=full_prefix, PaginationConfig={"PageSize": self._page_size}
        )
        strip = len(self._key_prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                # botocore parses LastModified in the local timezone; normalize to UTC.
                modified = obj["LastModified"].astimezone(UTC)
                yield ObjectInfo(obj["Key"][strip:], int(obj["Size"]), modified)

    def delete(self, keys: Iterable[str]) -> None:
        """DeleteObjects in batches of 1000; missing keys are not errors (S3 semantics).

        Raises ``OSError`` if S3 reports per-key failures (e.g. access denied).
        """
        # dict.fromkeys: validate everything up front and drop duplicates, keeping order.
        full_keys = list(dict.fromkeys(self._full_key(key) for key in keys))
        for start in range(0, len(full_keys), DELETE_BATCH):
            batch = full_keys[start : start + DELETE_BATCH]
            response = self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise OSError(
                    f"DeleteObjects failed for {len(errors)} key(s) in {self.uri}, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                )

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """Return a ``pyarrow.fs.S3FileSystem`` built from this client's resolved settings
        (endpoint, region, current credentials, retries) and ``"bucket/prefix"``.
        """
        from pyarrow import fs as pafs

        options: dict[str, Any] = {
            "region": self._client.meta.region_name,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self._max_attempts),
        }
        endpoint = urlsplit(self._client.meta.endpoint_url)
        if endpoint.path not in ("", "/"):
            raise ValueError("pyarrow cannot use an S3 endpoint URL with a path component")
        hostname = endpoint.hostname or ""
        # For AWS proper let pyarrow pick the regional endpoint itself; anything else
        # (R2, MinIO, moto) must be passed explicitly.
        if not (hostname == "amazonaws.com" or hostname.endswith(".amazonaws.com")):
            options["endpoint_override"] = endpoint.netloc
            options["scheme"] = endpoint.scheme
        frozen = self.credentials
        if frozen is None:
            options["anonymous"] = True
        else:
            options["access_key"] = frozen.access_key
            options["secret_key"] = frozen.secret_key
            if frozen.token:
                options["session_token"] = frozen.token
        base = f"{self._bucket}/{self._prefix}" if self._prefix else self._bucket
        return pafs.S3FileSystem(**options), base

    def local_path(self, key: str) -> str | None:
        """Always ``None``: S3 objects have no local path (the key is still validated)."""
        self._full_key(key)
        return None
