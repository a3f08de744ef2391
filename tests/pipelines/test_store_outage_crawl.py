"""An object-store outage in the middle of a real crawl: S3 (moto) behind a proxy that refuses connections,
then black-holes them, then recovers; or goes dark under the store's pooled connections for longer than a
try's read timeout, several times over. Nothing is lost, the cursor ends at the feed's end, exit 0."""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import urlsplit

import pytest

from crawler.meta import MetaDB
from tests import faults
from tests.fakes.npm import FakeNpmRegistry
from tests.fakes.outage_proxy import outage_proxy

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def refused_then_black_holed(proxy) -> None:
    proxy.set_mode("refuse")  # the store's host is down...
    time.sleep(8)
    proxy.set_mode("blackhole")  # ...then the network path to it is dead...
    time.sleep(4)
    proxy.set_mode("pass")  # ...then it is back


def dark_for_longer_than_a_try(proxy) -> None:
    # open connections stop answering, new ones are never answered: each try of a write waits S3_READ_TIMEOUT
    # (2 s) for nothing, and the path stays dark longer than all of a write's tries together (5), so the
    # store's own back-off (STORE_RETRY_SECONDS) must carry the batch through
    proxy.set_mode("blackhole", cut=False)
    time.sleep(15)
    proxy.set_mode("pass")


OUTAGES = {
    "object store refusing, then black-holed, for 12 s mid-crawl (S3)": (refused_then_black_holed, {}),
    "object store dark under its connections 15 s, 7 x the read timeout (S3)": (
        dark_for_longer_than_a_try,
        {"S3_READ_TIMEOUT": 2, "S3_CONNECT_TIMEOUT": 2},
    ),
}


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_an_object_store_outage_mid_crawl_loses_nothing(workspace, s3_server, outage):
    stage, settings = OUTAGES[outage]
    target = urlsplit(s3_server.endpoint_url)
    with (
        FakeNpmRegistry(packages=300, seed=21, latency=0.01).serve() as fake,
        outage_proxy(target.hostname or "127.0.0.1", target.port or 80) as proxy,
    ):
        prefix = f"outage-{uuid.uuid4().hex[:8]}"
        env = {
            **workspace.env,
            "NPM_REGISTRY_URL": fake.registry_url,
            "NPM_CHANGES_URL": fake.changes_url,
            "STORAGE_URI": f"s3://{s3_server.bucket}/{prefix}",
            "META_DB_URL": f"sqlite:///{workspace.path / 'meta.db'}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": proxy.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        crawl_settings = {"NPM_CHANGES_PAGE_SIZE": 20, "BATCH_MAX_RECORDS": 20, "STORE_RETRY_SECONDS": 120, **settings}
        status, stderr = workspace.crawl_through(
            lambda: stage(proxy), fake, "npm", "mode=incremental", settings=crawl_settings, env=env
        )
        assert status == 0, stderr.decode()[-3000:]
        assert proxy.refused + proxy.darkened > 0, "the outage never met a request"
        positions = fake.feed_positions()
        rows = workspace.query("SELECT DISTINCT name FROM npm_package_history", **env)
    assert {row["name"] for row in rows} == set(positions)
    with MetaDB.connect(env["META_DB_URL"]) as meta:
        assert meta.get_cursor("npm") == str(max(positions.values()))
        (run,) = meta.last_runs("npm")
    assert not run["stats"].get("store/batch_failures")
    if stage is refused_then_black_holed:  # botocore's own tries end within seconds: the store's back-off holds it
        assert run["stats"].get("store/retries", 0) > 0
    faults.record("npm", outage, 1)
