"""The distribution that Scrapy Cloud (shub deploy) and pip install carry: it builds offline, and the settings,
spiders and package data load from it alone, through the ``scrapy`` entry point.

Each artifact is built from a copy of the checkout and loaded in a subprocess whose ``sys.path`` has the
artifact in front and whose working directory is empty: no scrapy.cfg, no checkout on the path. A project
that only works from the checkout (a module outside ``crawler``, a data file left out of the package)
fails here before it fails on a deploy target.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, build_egg, clean_env

# Run inside the artifact-only interpreter. Prints what the parent asserts on, as JSON.
PROBE = r"""
import importlib.metadata as md, importlib.resources, json, os, sys

artifact = sys.argv[1]
# the distribution inside the artifact, not one of the virtualenv (an editable install of the checkout)
(dist,) = [d for d in md.distributions(path=[artifact]) if d.metadata["Name"] == "scrapy-ingestion"]
(entry,) = [e for e in dist.entry_points if e.group == "scrapy" and e.name == "settings"]
module = entry.load()
# what scrapyd's runner and Scrapy Cloud do with the entry point before `scrapy crawl`
os.environ["SCRAPY_SETTINGS_MODULE"] = entry.value

from scrapy.spiderloader import get_spider_loader
from scrapy.utils.project import get_project_settings

import crawler
from crawler.meta import schema_sql

settings = get_project_settings()
print(json.dumps({
    "entry_point": entry.value,
    "settings_file": module.__file__,
    "crawler_file": crawler.__file__,
    "bot_name": settings["BOT_NAME"],
    "spider_modules": list(settings.getlist("SPIDER_MODULES")),
    "spiders": sorted(get_spider_loader(settings).list()),
    "schema_in_package": importlib.resources.files("crawler.meta").joinpath("schema-minimal.sql").is_file(),
    "schema_sql": schema_sql()[:2000],
    "cwd_entries": os.listdir("."),
}))
"""


def load_from(artifact: Path, tmp_path: Path) -> dict:
    """Run PROBE with ``PYTHONPATH=<artifact>`` in an empty working directory."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = clean_env(tmp_path / "home")
    env["PYTHONPATH"] = str(artifact)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(artifact)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_project_loads(found: dict, artifact: Path) -> None:
    assert found["entry_point"] == "crawler.settings"
    # imported from the artifact, not from the checkout or an editable install
    assert found["settings_file"].startswith(str(artifact)), found["settings_file"]
    assert found["crawler_file"].startswith(str(artifact)), found["crawler_file"]
    assert found["bot_name"] == "crawler"
    assert found["spider_modules"] == ["crawler.spiders"]
    assert {"npm", "pypi", "github"} <= set(found["spiders"])
    assert found["schema_in_package"]
    assert "CREATE TABLE IF NOT EXISTS ingestion_runs" in found["schema_sql"]
    assert found["cwd_entries"] == []


def test_scrapinghub_yml() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "scrapinghub.yml").read_text())
    # a stack frozen to a date: scrapy:<feature version>-<YYYYMMDD>
    match = re.fullmatch(r"scrapy:(\d+)\.(\d+)-(\d{8})", config["stack"])
    assert match, config["stack"]
    assert config["requirements"] == {"file": "requirements.txt"}
    requirements = (ROOT / config["requirements"]["file"]).read_text()
    pinned = re.search(r"^scrapy==(\d+)\.(\d+)", requirements, re.MULTILINE | re.IGNORECASE)
    assert pinned, "requirements.txt must pin scrapy"
    # a stack newer than the pinned Scrapy would downgrade Scrapy under code written for the stack's version
    stack_version = (int(match.group(1)), int(match.group(2)))
    assert stack_version <= (int(pinned.group(1)), int(pinned.group(2)))
    assert not {"apikey", "apikeys"} & set(config), "API keys go to ~/.scrapinghub.yml or SHUB_APIKEY"


def test_egg_as_shub_builds_it_loads_on_its_own(project_copy: Path, tmp_path: Path) -> None:
    egg = build_egg(project_copy, tmp_path / "dist", clean_env(tmp_path / "home"))
    with zipfile.ZipFile(egg) as zf:
        names = set(zf.namelist())
        entry_points = zf.read("EGG-INFO/entry_points.txt").decode()
    assert "crawler/meta/schema-minimal.sql" in names
    assert not {n for n in names if n.startswith(("tests/", "bench/", "scripts/"))}
    assert re.search(r"^\[scrapy\]\s*^settings\s*=\s*crawler\.settings\s*$", entry_points, re.MULTILINE)
    assert_project_loads(load_from(egg, tmp_path), egg)


def build_wheel(project: Path, out: Path, env: dict[str, str]) -> Path:
    """A wheel without network: no isolated build environment, the virtualenv's setuptools."""
    if importlib.util.find_spec("build") is not None:
        command = [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), "."]
    else:
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), "."]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    # a setuptools older than pyproject's build requirement, and no `wheel` package: nothing to build a wheel with
    # without fetching a build environment (the egg test covers what shub deploys)
    if result.returncode != 0 and re.search(r"(Missing|Unmet) dependencies|invalid command 'bdist_wheel'", output):
        pytest.skip("no offline wheel build here: install setuptools>=70.1 (see requirements-dev.txt)")
    assert result.returncode == 0, output[-4000:]
    (wheel,) = out.glob("*.whl")
    return wheel


def test_wheel_loads_on_its_own(project_copy: Path, tmp_path: Path) -> None:
    wheel = build_wheel(project_copy, tmp_path / "dist", clean_env(tmp_path / "home"))
    # an unpacked wheel is what `pip install --target` leaves: importable, with its .dist-info
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert "crawler/meta/schema-minimal.sql" in zf.namelist()
        zf.extractall(unpacked)
    assert_project_loads(load_from(unpacked, tmp_path), unpacked)
