"""The same crawl and query with S3 storage (a real S3 server on loopback) and SQLite metadata."""

from __future__ import annotations

import json
import os
import uuid

import boto3
import pytest

pytestmark = pytest.mark.slow


def test_crawl_to_s3_and_query_it(workspace, fake_npm, npm_env, s3_server):
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    env = {
        **npm_env,
        "STORAGE_URI": f"s3://{s3_server.bucket}/{prefix}",
        "META_DB_URL": f"sqlite:///{workspace.path / 'meta.db'}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    names = sorted(fake_npm.package_names())[:12]
    workspace.crawl("npm", "packages=" + ",".join(names), **env)

    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["Contents"]]
    assert any(key.endswith(".parquet") and "/npm/year=" in key for key in keys)
    assert any(key.endswith(".ndjson") for key in keys)
    catalog = json.loads(
        client.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/npm/_metadata/catalog.json")["Body"].read()
    )
    assert catalog["record_count"] == len(names)
    assert not (workspace.data).exists(), "nothing may be written to the local folder"

    rows = workspace.query("SELECT name FROM npm_package ORDER BY name", **env)
    assert [row["name"] for row in rows] == names
