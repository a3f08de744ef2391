"""The project deploys with scrapyd-deploy to a real scrapyd, and schedule.json runs a spider that writes data
and a run row.

One scrapyd (127.0.0.1, free port, temporary folders) serves the module; the project is deployed once from a
copy of the checkout. Crawls get their settings per job (``setting=NAME=value``) and read the loopback fake
npm registry of ``tests/fakes/npm.py``.
"""

from __future__ import annotations

import re
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest

from crawler.meta import MetaDB
from crawler.query.views import connect
from crawler.storage import open_store
from tests.deploy.conftest import ROOT, ScrapydServer
from tests.fakes.npm import FakeNpmRegistry

pytestmark = pytest.mark.slow

SCHEDULE_SCRIPT = ROOT / "deploy" / "schedule-scrapyd.sh"


def stored(storage: Path) -> dict[str, str]:
    """name -> _run_id of the latest npm records, read through the platform's own views."""
    assert list(storage.glob("npm/year=*/month=*/day=*/*.parquet")), f"no Parquet under {storage}/npm/year=…"
    con = connect(open_store(str(storage)))
    try:
        return dict(con.execute("SELECT name, _run_id FROM npm_package").fetchall())
    finally:
        con.close()


def run_row(storage: Path, run_id: str) -> dict | None:
    with MetaDB.connect(f"sqlite:///{storage / '_meta' / 'meta.db'}") as meta:
        return next((row for row in meta.last_runs("npm", limit=100) if row["run_id"] == run_id), None)


def test_deployed_egg_has_package_data_and_entry_point(scrapyd: ScrapydServer, deployed: str) -> None:
    assert "crawler" in scrapyd.get("listprojects.json")["projects"]
    assert scrapyd.get("listversions.json", project="crawler")["versions"] == [deployed]
    # the egg scrapyd stored is the one every job of this version runs
    (egg,) = (scrapyd.eggs_dir / "crawler").glob(f"{deployed}*.egg")
    with zipfile.ZipFile(egg) as zf:
        names = set(zf.namelist())
        assert "crawler/meta/schema-minimal.sql" in names
        assert "crawler/settings.py" in names
        assert not {n for n in names if n.startswith(("tests/", "bench/"))}
        entry_points = zf.read("EGG-INFO/entry_points.txt").decode()
    assert re.search(r"^\[scrapy\]\s*^settings\s*=\s*crawler\.settings\s*$", entry_points, re.MULTILINE)
    # listspiders.json loads the egg in a fresh process, the way a job does
    assert {"github", "npm", "pypi"} <= set(scrapyd.get("listspiders.json", project="crawler")["spiders"])


def test_schedule_json_runs_npm_and_records_the_job(
    scrapyd: ScrapydServer, deployed: str, fake_npm: FakeNpmRegistry, tmp_path: Path
) -> None:
    names = list(fake_npm.package_names())[:3]
    storage = tmp_path / "data"
    # scrapyd ≥ 1.5 no longer exports the job id (SCRAPY_JOB) to the crawl; choosing the job id and passing
    # it as RUN_ID too makes the run row match the job, on any scrapyd (deploy/schedule-scrapyd.sh does this)
    job = uuid.uuid4().hex
    answer = scrapyd.post(
        "schedule.json",
        [
            ("project", "crawler"),
            ("spider", "npm"),
            ("jobid", job),
            ("packages", ",".join(names)),
            ("setting", f"STORAGE_URI={storage}"),
            ("setting", f"NPM_REGISTRY_URL={fake_npm.registry_url}"),
            ("setting", f"RUN_ID={job}"),
        ],
    )
    assert answer == {"node_name": answer["node_name"], "status": "ok", "jobid": job}

    scrapyd.wait_finished("crawler", job, timeout=90)
    log = scrapyd.job_log("crawler", "npm", job)
    assert "Traceback" not in log, log[-4000:]

    assert stored(storage) == dict.fromkeys(names, job), log[-4000:]
    row = run_row(storage, job)
    assert row is not None, log[-4000:]
    assert row["finish_reason"] == "finished"
    assert row["spider"] == "npm" and row["items"] == 3


def test_run_id_is_scrapyds_own_job_id(
    scrapyd: ScrapydServer, deployed: str, fake_npm: FakeNpmRegistry, tmp_path: Path
) -> None:
    """A job scheduled without RUN_ID (scrapyd's web UI, plain curl) should still be recorded under its job id."""
    name = next(iter(fake_npm.package_names()))
    storage = tmp_path / "data"
    answer = scrapyd.post(
        "schedule.json",
        [
            ("project", "crawler"),
            ("spider", "npm"),
            ("packages", name),
            ("setting", f"STORAGE_URI={storage}"),
            ("setting", f"NPM_REGISTRY_URL={fake_npm.registry_url}"),
        ],
    )
    job = answer["jobid"]
    scrapyd.wait_finished("crawler", job, timeout=90)
    runs = stored(storage)
    assert set(runs) == {name}, scrapyd.job_log("crawler", "npm", job)[-4000:]
    row = run_row(storage, runs[name])
    assert row is not None and row["finish_reason"] == "finished"
    assert runs[name] == job  # scrapyd's _job argument is the run id


def test_schedule_script_posts_to_schedule_json(
    scrapyd: ScrapydServer, deployed: str, fake_npm: FakeNpmRegistry, tmp_path: Path
) -> None:
    names = list(fake_npm.package_names())[3:5]
    storage = tmp_path / "data"
    result = subprocess.run(
        [
            "bash",
            str(SCHEDULE_SCRIPT),
            "npm",
            "-s",
            f"STORAGE_URI={storage}",
            "-s",
            f"NPM_REGISTRY_URL={fake_npm.registry_url}",
            f"packages={','.join(names)}",
        ],
        # a trailing slash in SCRAPYD_URL is tolerated by the script
        env={**scrapyd.env, "SCRAPYD_URL": scrapyd.url + "/", "SCRAPYD_PROJECT": "crawler"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r'"jobid":\s*"([^"]+)"', result.stdout)
    assert match, result.stdout
    job = match.group(1)

    scrapyd.wait_finished("crawler", job, timeout=90)
    assert stored(storage) == dict.fromkeys(names, job), scrapyd.job_log("crawler", "npm", job)[-4000:]
    row = run_row(storage, job)
    assert row is not None and row["finish_reason"] == "finished"
