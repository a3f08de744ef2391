"""Fixtures of the deployment tests: a copy of the project to build from, and a real scrapyd on loopback.

Builds never run in the checkout: ``setup.py bdist_egg`` (what scrapyd-deploy and shub run) writes
``build/`` and ``*.egg-info`` next to ``setup.py``, and other people work in the same tree. A copy also
proves that the files a deploy tool sees are enough to build the project.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# what a deploy tool must not package (shub leaves out what git ignores: see .gitignore) and what would make
# the copy slow (data, virtualenv). Top-level names only at the top: a package may well have a data/ folder.
TOP_LEVEL_IGNORED = {".git", ".venv", "data", "build", "dist", ".scrapy"}
_ignored_anywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")


def copy_ignore(folder: str, names: list[str]) -> set[str]:
    """The `ignore` callable of shutil.copytree for a copy of the checkout."""
    ignored = set(_ignored_anywhere(folder, names))
    if Path(folder) == ROOT:
        ignored |= TOP_LEVEL_IGNORED & set(names)
    return ignored


# variables that would let a deployed crawl find its settings or the project without the egg
LEAKY_PREFIXES = ("NPM_", "npm_config", "PYPI_", "PIP_INDEX", "STORAGE_", "META_", "AWS_", "SCRAPY", "GITHUB_")
LEAKY_NAMES = {"PYTHONPATH", "RUN_ID"}


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without anything that points at the checkout or a data folder.

    ``HOME`` is a fresh folder so that no ``~/.scrapyd.conf``, ``~/.npmrc`` or ``~/.scrapinghub.yml``
    of the machine changes what is tested.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES) and k not in LEAKY_NAMES}
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool(name: str) -> str:
    """A console script of this virtualenv (scrapyd-deploy, …), or skip when it is not installed."""
    path = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (see requirements-dev.txt)")
    return path


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout as a deploy tool sees it, in a temporary folder."""
    dst = tmp_path_factory.mktemp("project") / "scrapy-ingestion"
    shutil.copytree(ROOT, dst, ignore=copy_ignore)
    return dst


def build_egg(project: Path, out: Path, env: dict[str, str]) -> Path:
    """``python setup.py clean -a bdist_egg -d OUT``: the exact command of scrapyd-deploy and shub deploy."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "setup.py", "clean", "-a", "bdist_egg", "-d", str(out)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"bdist_egg failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    (egg,) = out.glob("*.egg")
    return egg


# ---------------------------------------------------------------------------------------------- scrapyd


@dataclass
class ScrapydServer:
    """A scrapyd process on 127.0.0.1 with its own configuration and folders."""

    home: Path
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    @property
    def url(self) -> str:
        # no trailing slash: the form scrapyd-client and deploy/schedule-scrapyd.sh expect
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def eggs_dir(self) -> Path:
        return self.home / "eggs"

    def get(self, endpoint: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/{endpoint}{query}", timeout=30) as response:
            return json.load(response)

    def post(self, endpoint: str, data: list[tuple[str, str]]) -> dict[str, Any]:
        # a list of pairs, not a dict: schedule.json takes `setting` once per setting
        body = urllib.parse.urlencode(data).encode()
        with urllib.request.urlopen(f"{self.url}/{endpoint}", data=body, timeout=30) as response:
            return json.load(response)

    def server_log(self) -> str:
        path = self.home / "scrapyd.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def job_log(self, project: str, spider: str, job: str) -> str:
        path = self.logs_dir / project / spider / f"{job}.log"
        return path.read_text(errors="replace") if path.exists() else f"(no log at {path})"

    def wait_finished(self, project: str, job: str, timeout: float = 90) -> dict[str, Any]:
        """Poll listjobs.json until ``job`` is finished; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.get("listjobs.json", project=project)
            for finished in jobs["finished"]:
                if finished["id"] == job:
                    return finished
            if self.process.poll() is not None:
                raise AssertionError(f"scrapyd exited with {self.process.returncode}:\n{self.server_log()}")
            time.sleep(0.5)
        raise AssertionError(f"job {job} not finished after {timeout} s: {jobs}\n{self.server_log()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the process group (scrapyd and the crawls it spawned), SIGKILL when that is not enough."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # crawls of the group that outlived scrapyd
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


SCRAPYD_CONF = """\
[scrapyd]
bind_address = 127.0.0.1
http_port    = {port}
eggs_dir     = {home}/eggs
logs_dir     = {home}/logs
items_dir    =
dbs_dir      = {home}/dbs
jobs_to_keep = 5
max_proc     = 2
poll_interval = 0.5
"""


def start_scrapyd(home: Path, startup_timeout: float = 30, attempts: int = 3) -> ScrapydServer:
    """Start scrapyd in ``home`` (its cwd, so its own scrapyd.conf is read) and wait for daemonstatus.json."""
    env = clean_env(home / "home")
    last_error = ""
    for _ in range(attempts):  # another process may take the free port between probe and bind
        port = free_port()
        (home / "scrapyd.conf").write_text(SCRAPYD_CONF.format(port=port, home=home))
        with open(home / "scrapyd.out", "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "scrapyd", "--pidfile", str(home / "twistd.pid")],
                cwd=home,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the crawls it spawned too
            )
        server = ScrapydServer(home=home, port=port, process=process, env=env)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if server.get("daemonstatus.json").get("status") == "ok":
                    return server
            except OSError:
                time.sleep(0.2)
        last_error = server.server_log()
        server.stop()
    raise AssertionError(f"scrapyd did not answer daemonstatus.json:\n{last_error}")


@pytest.fixture(scope="module")
def scrapyd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapydServer]:
    pytest.importorskip("scrapyd", reason="scrapyd is not installed (see requirements-dev.txt)")
    server = start_scrapyd(tmp_path_factory.mktemp("scrapyd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def deployed(scrapyd: ScrapydServer, project_copy: Path) -> str:
    """Deploy the project copy to ``scrapyd`` with scrapyd-deploy; returns the deployed version."""
    deploy = tool("scrapyd-deploy")
    cfg = configparser.ConfigParser()
    cfg.read(project_copy / "scrapy.cfg")
    cfg["deploy:loopback"] = {"url": scrapyd.url, "project": "crawler"}
    with open(project_copy / "scrapy.cfg", "w") as fh:
        cfg.write(fh)
    version = f"test-{int(time.time())}"
    result = subprocess.run(
        [deploy, "loopback", "-p", "crawler", "-v", version],
        cwd=project_copy,
        env=scrapyd.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"scrapyd-deploy failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    answer = json.loads(result.stdout)
    assert answer["status"] == "ok", answer
    return version
