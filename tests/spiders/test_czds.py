"""The CZDS crawl against the loopback fake: login, cursors, faults, raw files, changes, S3, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from scrapy.http import Request, Response

from crawler.meta import MetaDB
from crawler.spiders.czds.auth import LoginFailed, TokenMiddleware, token_expiry
from tests.fakes.czds import FakeCzds, _b64, domain_label, name_servers, write_zone, zone_day

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def zones(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "zones"
    folder.mkdir()
    return {
        "day0": write_zone(folder / "example-0.gz", "example", 2000, day=0, churn=25),
        "day1": write_zone(folder / "example-1.gz", "example", 2000, day=1, churn=25),
        "test": write_zone(folder / "test.gz", "test", 300, syntax="rfc1035"),
        "small": write_zone(folder / "small.gz", "small", 200),
    }


@pytest.fixture
def fake(zones: dict[str, Path]):
    czds = FakeCzds()
    czds.add_zone("example", zones["day0"], zone_day(0))
    czds.add_zone("test", zones["test"], zone_day(0))
    with czds.serve():
        yield czds


def czds_env(fake: FakeCzds, workspace: Any, **extra: str) -> dict[str, str]:
    return {
        "CZDS_AUTH_URL": fake.auth_url,
        "CZDS_API_URL": fake.api_url,
        "CZDS_USERNAME": fake.username,
        "CZDS_PASSWORD": fake.password,
        "CZDS_DOWNLOAD_DIR": str(workspace.path / "downloads"),
        **extra,
    }


def dead_letters(workspace: Any) -> list[str]:
    meta = workspace.meta()
    return sorted(row["reason"] for row in meta.failed("czds"))


def test_a_crawl_keeps_the_raw_zones_and_stores_their_delegations(workspace, fake):
    env = czds_env(fake, workspace)
    # zone files are larger than any response cap (.com: 4.6 GB): neither their HEAD nor their GET is capped
    assert Path(fake.zones["example"].path).stat().st_size > 8000
    workspace.crawl("czds", settings={"DOWNLOAD_MAXSIZE": 8000}, **env)
    assert fake.logins == 1
    assert (workspace.data / "zones/example/example-2026-11-01.zone.gz").read_bytes() == Path(
        fake.zones["example"].path
    ).read_bytes()
    assert (workspace.data / "zones/test/test-2026-11-01.domains.parquet").exists()
    rows = workspace.query(
        "SELECT tld, count(*) AS n, count(*) FILTER (WHERE has_ds) AS signed, min(zone_date) AS day "
        "FROM domains GROUP BY tld ORDER BY tld",
        **env,
    )
    assert rows == [
        {"tld": "example", "n": 2000, "signed": 200, "day": "2026-11-01"},
        {"tld": "test", "n": 300, "signed": 30, "day": "2026-11-01"},
    ]
    (summary,) = workspace.query("SELECT * FROM zone_files WHERE tld = 'test'", **env)
    assert summary["syntax"] == "rfc1035" and summary["domains"] == 300 and summary["added"] is None
    assert summary["record_types"]["ns"] == 601
    meta = workspace.meta()
    assert meta.get_cursor("czds", "example") == "2026-11-01T00:05:00+00:00"
    assert not list((workspace.path / "downloads").iterdir()), "downloaded files are removed"


def test_an_unchanged_zone_is_not_downloaded_again_and_a_new_day_gives_its_changes(workspace, fake, zones):
    env = czds_env(fake, workspace)
    workspace.crawl("czds", **env)
    workspace.crawl("czds", **env)
    assert fake.downloads == {"example": 1, "test": 1} and fake.heads == {"example": 2, "test": 2}
    fake.add_zone("example", zones["day1"], zone_day(1))
    workspace.crawl("czds", "tlds=example", **env)
    assert fake.downloads == {"example": 2, "test": 1} and fake.logins == 3
    changes = workspace.query(
        "SELECT change, count(*) AS n, min(previous_date) AS previous FROM zone_changes "
        "WHERE tld = 'example' AND zone_date = '2026-11-02' GROUP BY change ORDER BY change",
        **env,
    )
    assert changes == [
        {"change": "added", "n": 25, "previous": "2026-11-01"},
        {"change": "removed", "n": 25, "previous": "2026-11-01"},
    ]
    # the README's question: the domains added in .example on a day
    added = workspace.query(
        "SELECT fqdn FROM zone_changes WHERE tld = 'example' AND change = 'added' "
        "AND zone_date = '2026-11-02' ORDER BY fqdn",
        **env,
    )
    first_day = {r["fqdn"] for r in workspace.query("SELECT fqdn FROM domains WHERE zone_date = '2026-11-01'", **env)}
    assert len(added) == 25 and not {r["fqdn"] for r in added} & first_day
    (summary,) = workspace.query("SELECT added, removed FROM zone_files WHERE zone_date = '2026-11-02'", **env)
    assert summary == {"added": 25, "removed": 25}


README_QUERY = (
    "SELECT fqdn, name_servers FROM zone_changes WHERE tld = 'example' AND change = 'added' "
    "AND zone_date = strftime(current_date - 1, '%Y-%m-%d') ORDER BY fqdn"
)


def test_the_readme_query_answers_the_domains_added_yesterday(workspace, fake, zones):
    today = datetime.now(UTC).replace(hour=0, minute=5, second=0, microsecond=0)
    env = czds_env(fake, workspace)
    fake.add_zone("example", zones["day0"], today - timedelta(days=2))
    workspace.crawl("czds", "tlds=example", **env)
    fake.add_zone("example", zones["day1"], today - timedelta(days=1))
    workspace.crawl("czds", "tlds=example", **env)
    added = workspace.query(README_QUERY, **env)
    assert [row["fqdn"] for row in added] == sorted(f"{domain_label(i)}.example" for i in range(2000, 2025))
    assert added[0]["name_servers"] == list(name_servers(2000))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("cut", "truncated_download"),
        ("short", "wrong_length"),
        ("corrupt", "corrupt_gzip"),
        ("forbidden", "no_access"),
        ("terms", "terms_not_accepted"),
    ],
)
def test_a_bad_zone_is_a_dead_letter_its_cursor_stays_and_the_others_go_on(workspace, fake, zones, fault, reason):
    fake.add_zone("small", zones["small"], zone_day(0), fault)
    env = czds_env(fake, workspace)
    workspace.crawl("czds", settings={"MONITOR_MAX_ERROR_RATE": 1}, **env)
    (letter,) = dead_letters(workspace)
    assert letter.startswith(reason)
    meta = workspace.meta()
    assert meta.get_cursor("czds", "small") is None
    assert meta.get_cursor("czds", "example") and meta.get_cursor("czds", "test")
    assert not (workspace.data / "zones/small").exists(), "a bad download is never kept nor parsed"
    assert not list((workspace.path / "downloads").iterdir())
    (row,) = workspace.query("SELECT count(*) AS n FROM domains WHERE tld = 'small'", **env)
    assert row["n"] == 0, "no record of a bad download is stored (a corrupt gzip is found before the parse)"
    # fixed at the source: the next run fetches it (and only it)
    fake.add_zone("small", zones["small"], zone_day(0))
    workspace.crawl("czds", **env)
    assert meta.get_cursor("czds", "small") == "2026-11-01T00:05:00+00:00"
    assert fake.downloads["example"] == 1


def test_a_401_mid_run_logs_in_once_more(workspace, fake):
    fake.revoke_after = 2  # the links and one HEAD pass, then every token is revoked
    workspace.crawl("czds", **czds_env(fake, workspace))
    assert fake.logins == 2
    assert fake.downloads == {"example": 1, "test": 1}
    assert dead_letters(workspace) == []


def test_429_on_login_fails_the_run_without_more_logins(workspace, fake):
    fake.login_limit = 0
    result = workspace.crawl("czds", settings={"MONITOR_MAX_ERROR_RATE": 1}, check=False, **czds_env(fake, workspace))
    assert fake.logins == 4  # the first attempt and the policy's 3 retries, then no more
    assert fake.downloads == {}
    (letter,) = dead_letters(workspace)
    assert "czds_login_failed: http_429" in letter
    assert fake.password not in result.stderr


def test_the_token_is_renewed_before_its_exp_and_shared():
    now = time.time()

    def jwt(exp: float) -> str:
        return f"{_b64({'alg': 'none'})}.{_b64({'exp': int(exp)})}.sig"

    class Engine:
        def __init__(self) -> None:
            self.logins: list[Request] = []
            self.exp = now + 3600

        async def download_async(self, request: Request) -> Response:
            self.logins.append(request)
            await asyncio.sleep(0.01)
            body = b'{"accessToken": "%s"}' % jwt(self.exp).encode()
            return Response(request.url, status=200, body=body, request=request)

    class Crawler:
        settings = {
            "CZDS_AUTH_URL": "http://127.0.0.1:9/",
            "CZDS_USERNAME": "u",
            "CZDS_PASSWORD": "p",
            "CZDS_TOKEN_RENEW_SECONDS": "600",
        }
        engine = Engine()

        class stats:
            @staticmethod
            def inc_value(*_: Any) -> None:
                pass

    middleware = TokenMiddleware(Crawler())  # type: ignore[arg-type]

    async def run() -> None:
        tokens = await asyncio.gather(*(middleware.current_token() for _ in range(5)))
        assert len(set(tokens)) == 1 and len(Crawler.engine.logins) == 1  # concurrent requests share one login
        assert Crawler.engine.logins[0].url == "http://127.0.0.1:9/api/authenticate"
        assert token_expiry(tokens[0]) == int(now + 3600)
        middleware.expires = time.time() + 599  # within CZDS_TOKEN_RENEW_SECONDS of its exp
        await middleware.current_token()
        assert len(Crawler.engine.logins) == 2

    asyncio.run(run())
    middleware.failure = "czds_login_failed: http_401"
    with pytest.raises(LoginFailed):
        asyncio.run(middleware.current_token())


def test_missing_endpoints_are_one_clear_error(workspace):
    result = workspace.crawl("czds", check=False)
    assert result.returncode != 0 and "czds: set CZDS_AUTH_URL and CZDS_API_URL" in result.stderr


@pytest.mark.slow
def test_kill_9_during_a_download_loses_nothing_and_fetches_that_zone_again(workspace, fake, zones, tmp_path):
    big = write_zone(tmp_path / "big.gz", "big", 60_000)
    fake.add_zone("big", big, zone_day(0), delay=0.2)  # ~20 chunks of 64 KiB: seconds
    env = {**workspace.env, **czds_env(fake, workspace)}
    downloads = workspace.path / "downloads"
    process = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "crawl", "czds"],
        cwd=workspace.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        fake.downloads.get("big") and any(p.stat().st_size > 0 for p in downloads.glob(".download-*"))
    ):
        time.sleep(0.05)
    assert any(downloads.glob(".download-*.part")), "killed while the zone streams to its file"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert fake.downloads.get("big") == 1
    meta = workspace.meta()
    assert meta.get_cursor("czds", "big") is None
    assert not (workspace.data / "zones/big").exists(), "a cut download never becomes a snapshot"

    fake.zones["big"].delay = 0
    workspace.crawl("czds", **czds_env(fake, workspace))
    assert fake.downloads["big"] == 2
    assert all(count <= 2 for count in fake.downloads.values())
    assert not list(downloads.glob(".download-*")), "the killed run's partial file is removed"
    (row,) = workspace.query(
        "SELECT count(DISTINCT fqdn) AS n FROM domains WHERE tld = 'big'", **czds_env(fake, workspace)
    )
    assert row["n"] == 60_000
    assert meta.get_cursor("czds", "big") == "2026-11-01T00:05:00+00:00"


def s3_env(fake: FakeCzds, workspace: Any, s3_server: Any, prefix: str) -> dict[str, str]:
    return {
        **czds_env(fake, workspace),
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


def s3_keys(s3_server: Any, prefix: str) -> set[str]:
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    listing = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
    return {obj["Key"] for obj in listing.get("Contents", [])}


@pytest.mark.slow
def test_a_crawl_to_s3(workspace, fake, s3_server):
    prefix = f"czds-{uuid.uuid4().hex[:8]}"
    env = s3_env(fake, workspace, s3_server, prefix)
    workspace.crawl("czds", **env)
    fake.add_zone("example", Path(fake.zones["example"].path).with_name("example-1.gz"), zone_day(1))
    workspace.crawl("czds", **env)
    keys = s3_keys(s3_server, prefix)
    assert f"{prefix}/zones/example/example-2026-11-01.zone.gz" in keys
    assert f"{prefix}/zones/example/example-2026-11-02.domains.parquet" in keys
    assert not workspace.data.exists(), "nothing may be written to the local folder"
    rows = workspace.query("SELECT change, count(*) AS n FROM zone_changes GROUP BY change ORDER BY change", **env)
    assert rows == [{"change": "added", "n": 25}, {"change": "removed", "n": 25}]


@pytest.mark.slow
def test_a_corrupt_zone_uploaded_to_s3_while_parsed_is_deleted_again(workspace, fake, zones, s3_server):
    prefix = f"czds-{uuid.uuid4().hex[:8]}"
    fake.add_zone("small", zones["small"], zone_day(0), "corrupt")
    env = s3_env(fake, workspace, s3_server, prefix)
    workspace.crawl("czds", "tlds=small,test", settings={"MONITOR_MAX_ERROR_RATE": 1}, **env)
    meta = MetaDB.connect(env["META_DB_URL"])
    (letter,) = [row["reason"] for row in meta.failed("czds")]
    assert letter.startswith("corrupt_gzip")
    keys = s3_keys(s3_server, prefix)
    assert f"{prefix}/zones/test/test-2026-11-01.zone.gz" in keys
    assert not {key for key in keys if key.startswith(f"{prefix}/zones/small/")}, "nothing of the bad zone is kept"
    assert meta.get_cursor("czds", "small") is None and meta.get_cursor("czds", "test")


@pytest.mark.slow
def test_kill_9_during_a_parse_loses_nothing_and_reads_that_zone_again(workspace, fake, tmp_path):
    big = write_zone(tmp_path / "big.gz", "big", 400_000)
    fake.add_zone("big", big, zone_day(0))
    env = {**workspace.env, **czds_env(fake, workspace), "COLUMNAR_BATCH_MAX_RECORDS": "20000"}
    downloads = workspace.path / "downloads"
    process = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "crawl", "czds", "-a", "tlds=big"],
        cwd=workspace.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(downloads.glob(".download-*.snapshot.parquet")):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # the snapshot is being written: the zone is being parsed
    process.wait(timeout=30)
    meta = workspace.meta()
    # the raw file and the snapshot are kept once the parse has read the whole gzip stream
    assert not (workspace.data / "zones/big/big-2026-11-01.domains.parquet").exists()
    if meta.get_cursor("czds", "big") is not None:
        pytest.skip("the zone was read before the kill (a fast machine): nothing to recover")
    workspace.crawl("czds", "tlds=big", **czds_env(fake, workspace))
    assert fake.downloads["big"] == 2
    (row,) = workspace.query(
        "SELECT count(*) AS n, count(DISTINCT fqdn) AS names FROM domains WHERE tld = 'big'",
        **czds_env(fake, workspace),
    )
    assert row["n"] == row["names"] == 400_000  # the latest record per key: no name twice, none lost
    assert meta.get_cursor("czds", "big") == "2026-11-01T00:05:00+00:00"
