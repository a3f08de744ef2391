"""The scheduling files of deploy/ say what they should, and every command they name exists.

Fast: nothing is scheduled. The crontab and the systemd units are parsed; the spiders and arguments they run
are checked against the spider loader; the units go through ``systemd-analyze verify`` where it exists;
deploy/schedule-scrapyd.sh posts to a loopback stand-in of schedule.json.
"""

from __future__ import annotations

import base64
import configparser
import json
import re
import shlex
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from scrapy.settings import Settings
from scrapy.spiderloader import get_spider_loader

from crawler.sources import all_sources
from tests.deploy.conftest import ROOT, VENV_BIN, clean_env, free_port

DEPLOY = ROOT / "deploy"
ENV_FILE = "/etc/scrapy-ingestion/ingestion.env"
#: what the sources declare (crawler/spiders/<name>/source.py); the files must say the same
SCHEDULES = {name: source.schedule for name, source in all_sources().items() if source.schedule is not None}
SCHEDULE = {name: schedule.cron for name, schedule in SCHEDULES.items()}
ON_CALENDAR = {name: schedule.on_calendar for name, schedule in SCHEDULES.items()}
FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]  # minute hour day-of-month month day-of-week
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def spider_loader():
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    return get_spider_loader(settings)


def check_time_field(value: str, low: int, high: int) -> None:
    for part in value.split(","):
        base, _, step = part.partition("/")
        assert not step or (step.isdigit() and int(step) > 0), value
        if base == "*":
            continue
        start, _, end = base.partition("-")
        for number in (start, end) if end else (start,):
            assert number.isdigit() and low <= int(number) <= high, f"{value!r} outside {low}-{high}"


@dataclass
class CronEntry:
    times: str
    command: str
    active: bool


def cron_entries() -> tuple[dict[str, str], list[CronEntry]]:
    """Variables and entries of deploy/crontab; commented lines that are entries count as inactive ones."""
    variables: dict[str, str] = {}
    entries: list[CronEntry] = []
    for line in (DEPLOY / "crontab").read_text().splitlines():
        text, active = line.strip(), True
        if text.startswith("#"):
            text, active = text.lstrip("#").strip(), False
            # prose comments do not start with five time fields
            if not re.match(r"^([\d*/,-]+\s+){5}\S", text):
                continue
        if not text:
            continue
        if active and ASSIGNMENT.match(text):
            name, _, value = text.partition("=")
            variables[name] = value
            continue
        fields = text.split(None, 5)
        assert len(fields) == 6, f"an entry needs 5 time fields and a command: {line!r}"
        for value, (low, high) in zip(fields[:5], FIELD_RANGES, strict=True):
            check_time_field(value, low, high)
        entries.append(CronEntry(" ".join(fields[:5]), fields[5], active))
    return variables, entries


def crawl_arguments(command: list[str]) -> tuple[str, dict[str, str]]:
    """The spider and ``-a`` arguments of a ``scrapy crawl`` command line."""
    spider = command[command.index("crawl") + 1]
    arguments = dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "-a")
    return spider, arguments


def check_spider_invocation(spider: str, arguments: dict[str, str]) -> None:
    loader = spider_loader()
    assert spider in loader.list()
    # the spider's own argument checks (unknown mode, missing names) run in its constructor
    loader.load(spider)(**arguments)


# ---------------------------------------------------------------------------------------------- crontab


def test_the_daily_schedules_are_the_documented_ones() -> None:
    assert {name: SCHEDULE[name] for name in ("npm", "pypi")} == {"npm": "0 2 * * *", "pypi": "0 3 * * *"}
    assert ON_CALENDAR["npm"] == "*-*-* 02:00:00 UTC" and ON_CALENDAR["pypi"] == "*-*-* 03:00:00 UTC"


def test_crontab_runs_each_source_daily_in_utc() -> None:
    variables, entries = cron_entries()
    assert variables["CRON_TZ"] == "UTC"
    active = [e for e in entries if e.active]
    assert len(active) == len(SCHEDULE) >= 2
    for spider, times in SCHEDULE.items():
        (entry,) = [e for e in active if f"scrapy crawl {spider} " in e.command]
        assert entry.times == times
        assert f". {ENV_FILE}" in entry.command and "set -a" in entry.command
        # one log file per source and UTC day, stdout and stderr
        assert entry.command.endswith(f'>> "logs/{spider}-$(date -u +\\%F).log" 2>&1'), "logs go to a file"
        # an unescaped % ends a cron command (the rest becomes its stdin)
        assert not re.search(r"(?<!\\)%", entry.command)


def test_crontab_commands_exist() -> None:
    variables, entries = cron_entries()
    home = variables["INGESTION_HOME"]
    for entry in entries:
        for step in re.split(r"\s*&&\s*", entry.command):
            words = shlex.split(step.split(">>")[0])
            program = words[0]
            if program in {"cd", "set", "."}:
                continue
            if program == "flock":
                assert shutil.which("flock"), "flock (util-linux)"
                words = words[3:]  # flock -n LOCKFILE command…
                program = words[0]
            if program.endswith("/scrapy"):
                # the checkout's virtualenv; here: the one running the tests
                assert program == ".venv/bin/scrapy" and (VENV_BIN / "scrapy").exists()
                spider, arguments = crawl_arguments(words)
                assert arguments == dict(SCHEDULES[spider].arguments)
                check_spider_invocation(spider, arguments)
            elif program == "deploy/schedule-scrapyd.sh":
                script = ROOT / program
                assert script.is_file() and script.stat().st_mode & 0o111, f"{script} must be executable"
                spider, *rest = words[1:]
                assert entry.times == SCHEDULE[spider]
                assert rest == [f"{k}={v}" for k, v in SCHEDULES[spider].arguments.items()]
                check_spider_invocation(spider, dict(arg.split("=", 1) for arg in rest))
            elif program == "curl":
                assert shutil.which("curl")
                url = next(w for w in words if w.startswith("http"))
                assert url.endswith(":6800/schedule.json"), url
                form = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-d")
                assert form["project"] == "crawler" and entry.times == SCHEDULE[form["spider"]]
                check_spider_invocation(form["spider"], {"mode": form["mode"]})
            else:
                assert shutil.which(program), f"{program} named by deploy/crontab"
    # cron and systemd run the same checkout
    assert home == unit("ingestion-npm.service")["Service"]["WorkingDirectory"]


# ---------------------------------------------------------------------------------------------- systemd


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text(), source=name)
    return parser


@pytest.mark.parametrize("spider", sorted(SCHEDULE))
def test_systemd_timer_and_service(spider: str) -> None:
    timer = unit(f"ingestion-{spider}.timer")
    assert timer["Timer"]["OnCalendar"] == ON_CALENDAR[spider]
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == f"ingestion-{spider}.service"
    assert timer["Install"]["WantedBy"] == "timers.target"

    service = unit(f"ingestion-{spider}.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"] == ENV_FILE
    command = shlex.split(service["ExecStart"])
    assert command[0] == f"{service['WorkingDirectory']}/.venv/bin/scrapy"
    assert command[1:3] == ["crawl", spider]
    assert command[3:] == [part for k, v in SCHEDULES[spider].arguments.items() for part in ("-a", f"{k}={v}")]
    check_spider_invocation(*crawl_arguments(command))


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart is executable: point the production path at this checkout
    production = unit("ingestion-npm.service")["Service"]["WorkingDirectory"]
    names = sorted(p.name for p in (DEPLOY / "systemd").iterdir())
    for name in names:
        text = (DEPLOY / "systemd" / name).read_text().replace(production, str(ROOT))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on settings it merely ignores; anything it prints is a mistake in a unit
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# ---------------------------------------------------------------------------------------------- env file


def test_env_example_reads_the_same_in_systemd_and_shell(tmp_path: Path) -> None:
    path = DEPLOY / "ingestion.env.example"
    declared: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert ASSIGNMENT.match(line) and "export" not in line, f"systemd EnvironmentFile syntax: {line!r}"
            name, _, value = line.partition("=")
            declared[name] = value.strip('"')
    assert {"STORAGE_URI", "SCRAPYD_URL"} <= set(declared)
    assert not declared["SCRAPYD_URL"].endswith("/")
    # what the crontab does with it
    script = f"set -a; . {shlex.quote(str(path))}; set +a; env -0"
    env = {k: v for k, v in clean_env(tmp_path).items() if k in {"PATH", "HOME"}}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stderr, result.stderr
    shell = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    assert {name: shell.get(name) for name in declared} == declared
    # documented but commented out: no secret has a value in the example
    text = path.read_text()
    for secret in ("GITHUB_TOKENS", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "SCRAPYD_PASSWORD"):
        assert re.search(rf"^#{secret}=$", text, re.MULTILINE), secret
    # every variable it names is a platform setting, a source's declared setting, or a standard one
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    declared_by_sources = {s.name for source in all_sources().values() for s in source.settings}
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    unknown = {
        n
        for n in named
        if n not in settings and n not in declared_by_sources and not n.startswith(("AWS_", "SCRAPYD_"))
    }
    assert not unknown


# ---------------------------------------------------------------------------------------------- schedule-scrapyd.sh


@dataclass
class FakeSchedule:
    """A loopback stand-in for scrapyd's schedule.json that keeps what it was sent."""

    url: str
    requests: list[dict] = field(default_factory=list)


@pytest.fixture
def fake_schedule() -> Iterator[FakeSchedule]:
    port = free_port()
    fake = FakeSchedule(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            form = urllib.parse.parse_qs(body, keep_blank_values=True)
            fake.requests.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
            status = "error" if form.get("spider") == ["missing"] else "ok"
            answer = json.dumps({"node_name": "fake", "status": status, "jobid": form["jobid"][0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def schedule(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / "schedule-scrapyd.sh"), *args],
        # only PATH: no SCRAPYD_* of the machine reaches the script
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_schedule_script_form(fake_schedule: FakeSchedule) -> None:
    result = schedule(
        "npm",
        "-s",
        "STORAGE_URI=s3://bucket/prefix?x=1&y=2",
        "packages=a,@scope/b",
        "mode=named",
        SCRAPYD_URL=fake_schedule.url + "/",  # a trailing slash is dropped, not doubled
        SCRAPYD_JOB_ID="job-1",
        SCRAPYD_USERNAME="ingest",
        SCRAPYD_PASSWORD='p"w\\d:x',
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobid"] == "job-1"
    (request,) = fake_schedule.requests
    assert request["path"] == "/schedule.json"
    assert request["form"] == {
        "project": ["crawler"],
        "spider": ["npm"],
        "jobid": ["job-1"],
        "setting": ["RUN_ID=job-1", "STORAGE_URI=s3://bucket/prefix?x=1&y=2"],
        "packages": ["a,@scope/b"],
        "mode": ["named"],
    }
    assert request["auth"] == "Basic " + base64.b64encode(b'ingest:p"w\\d:x').decode()


def test_schedule_script_generates_a_job_id_and_fails_when_refused(fake_schedule: FakeSchedule) -> None:
    ok = schedule("pypi", "mode=incremental", SCRAPYD_URL=fake_schedule.url)
    assert ok.returncode == 0, ok.stderr
    form = fake_schedule.requests[0]["form"]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", form["jobid"][0])
    assert form["setting"] == [f"RUN_ID={form['jobid'][0]}"] and fake_schedule.requests[0]["auth"] is None

    refused = schedule("missing", SCRAPYD_URL=fake_schedule.url)
    assert refused.returncode == 1 and "refused" in refused.stderr


def test_schedule_script_usage_and_unreachable_scrapyd() -> None:
    assert schedule().returncode == 2
    assert schedule("npm", "not-an-assignment").returncode == 2
    assert schedule("npm", "-s", "NOVALUE").returncode == 2
    # nothing listens there: curl's connection error, quickly
    unreachable = schedule("npm", SCRAPYD_URL=f"http://127.0.0.1:{free_port()}", timeout=30)
    assert unreachable.returncode not in (0, 2) and unreachable.stderr


def test_schedule_script_is_executable_bash() -> None:
    script = DEPLOY / "schedule-scrapyd.sh"
    assert script.stat().st_mode & 0o111
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout


def test_systemd_worker_template_joins_a_distributed_crawl() -> None:
    service = unit("ingestion-worker@.service")["Service"]
    assert service["EnvironmentFile"] == ENV_FILE
    assert service["Restart"] == "always"  # it exits after each run: the host helps the next one too
    command = shlex.split(service["ExecStart"])
    assert command[0] == f"{service['WorkingDirectory']}/.venv/bin/scrapy"
    assert command[1:] == ["crawl", "%i", "-a", "mode=worker"]
    for spider in ("npm", "pypi"):  # the instances the README names: their constructors take mode=worker
        check_spider_invocation(spider, {"mode": "worker"})
