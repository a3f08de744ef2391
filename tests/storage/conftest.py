"""Fixtures for the object-store tests: a real (in-process) moto S3 server and both stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.storage import LocalStore, ObjectStore, open_store
from crawler.storage.s3 import S3Store
from tests.fakes.s3 import S3Server, fake_aws_env


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Fake AWS environment pointing at the moto server, restored after the test."""
    fake_aws_env(monkeypatch, s3_server.endpoint_url)
    return s3_server


@pytest.fixture
def s3_uri(s3_env: S3Server) -> str:
    """A fresh, unique prefix in the test bucket."""
    return f"s3://{s3_env.bucket}/test-{uuid.uuid4().hex}"


@pytest.fixture
def s3_store(s3_uri: str) -> Iterator[S3Store]:
    store = open_store(s3_uri)
    assert isinstance(store, S3Store)
    yield store
    store.delete(info.key for info in store.list())


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    store = open_store(str(tmp_path / "store"))
    assert isinstance(store, LocalStore)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each backend in turn, for tests of the shared ObjectStore contract."""
    return request.getfixturevalue(f"{request.param}_store")
