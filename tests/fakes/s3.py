"""A real S3 server for tests: moto's threaded server on a loopback port (not a mock of boto3)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer

BUCKET = "data-ingestion"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str


def fake_aws_env(mp: pytest.MonkeyPatch, endpoint_url: str) -> None:
    """Point boto3 (and pyarrow) at the moto server with fake credentials.

    Config files and the instance-metadata service are disabled so a developer's real AWS
    setup can neither leak in nor be contacted.
    """
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_ENDPOINT_URL_S3", endpoint_url)
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on a free loopback port, with the bucket ``data-ingestion``.

    The AWS environment is only changed while the bucket is created; tests get it through
    the function-scoped ``s3_env`` fixture.
    """
    werkzeug_log = logging.getLogger("werkzeug")
    old_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one access-log line per request is just noise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        with pytest.MonkeyPatch.context() as mp:
            fake_aws_env(mp, endpoint_url)
            boto3.session.Session().client("s3").create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint_url, BUCKET)
    finally:
        server.stop()
        werkzeug_log.setLevel(old_level)
