"""Checks over every source package: isolation, declarations, generated files, and bad input.

A new source passes these without editing this file (see the checklist in crawler/spiders/base.py).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import scrapy
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.spiderloader import SpiderLoader
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler
from twisted.python.failure import Failure

from crawler import docs
from crawler.config import SettingError
from crawler.extensions.cursors import Cursors
from crawler.items import Record, arrow_schema
from crawler.items.control import Checkpoint, WorkDone
from crawler.meta import MetaDB
from crawler.middlewares.work import WorkMiddleware
from crawler.sources import Setting, Source, all_sources
from crawler.spiders.base import SourceSpider
from crawler.storage import open_store
from tests import faults

ROOT = Path(__file__).resolve().parent.parent
SOURCES = all_sources()
LOADER = SpiderLoader.from_settings(get_project_settings())
SPIDERS = {name: LOADER.load(name) for name in LOADER.list()}
#: mentions of a source's name outside its package that are not about the source
NOT_THE_SOURCE = {
    # repository-URL parsing shared by every source knows the git hosts and npm's `github:` shorthand
    ("crawler/items/fields.py", "github"),
    # a project_urls label ("GitHub") that names a repository link
    ("crawler/spiders/pypi/records.py", "github"),
}


def test_every_source_package_is_found_and_has_one_spider():
    assert set(SOURCES) >= {"npm", "pypi", "github"}
    assert set(SPIDERS) == set(SOURCES)
    for name, spider in SPIDERS.items():
        assert issubclass(spider, SourceSpider) and spider.declaration is SOURCES[name]
        assert spider.__module__.startswith(f"crawler.spiders.{name}.")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_nothing_outside_a_source_package_names_it(name):
    # `_` is no boundary here: an identifier such as `<name>_package` or `<NAME>_PROXIES` names the source too
    pattern = re.compile(rf"(?<![A-Za-z0-9./-]){re.escape(name)}(?![A-Za-z0-9-])", re.IGNORECASE)
    offenders = []
    for path in sorted((ROOT / "crawler").rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if not path.is_file() or path.suffix not in (".py", ".sql", ".cfg", ".toml"):
            continue
        if relative.startswith(f"crawler/spiders/{name}/") or (relative, name) in NOT_THE_SOURCE:
            continue
        offenders += [
            f"{relative}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)
        ]
    assert offenders == [], f"{name} is named outside crawler/spiders/{name}/"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_declares_sane_policy_settings_and_records(name):
    source: Source = SOURCES[name]
    policy = source.policy
    assert 1 <= policy.concurrency <= 100, "concurrency must stay under the sources' secondary limits"
    assert policy.retries >= 1 and policy.backoff_base > 0
    assert 429 in policy.retry_http_codes and 503 in policy.retry_http_codes
    assert 0 < policy.max_response_bytes <= 1024**3
    assert 0 < policy.retry_after_max < policy.request_deadline <= 3600, "a capped Retry-After must fit the deadline"
    names = [setting.name for setting in source.settings]
    assert len(names) == len(set(names))
    assert all(n.startswith(source.setting_prefixes) for n in names), "a source's settings carry its prefixes"
    assert source.setting_prefixes[0] == name.upper() + "_"
    for other in SOURCES.values():
        if other is not source:  # no setting name could belong to two sources
            assert not any(p.startswith(source.setting_prefixes) for p in other.setting_prefixes)
    if policy.proxies_setting is not None:
        assert policy.proxies_setting in names
    for setting in source.settings:
        assert setting.help.strip(), f"{setting.name} needs a help text (it is the generated documentation)"
        assert setting.parse(None) == setting.default
        if setting.secret:
            assert setting.default in (None, ""), "a secret has no default"
    assert source.records
    for record_type in source.records:
        assert Record.registry[record_type.namespace] is record_type
        assert record_type.key and all(k in record_type.model_fields for k in record_type.key)
        assert record_type.__module__ == f"crawler.spiders.{name}.records"
        # what other sources read through crawler.inputs must be real string columns
        declared = [*record_type.domain_columns, *(c for pair in record_type.people_columns for c in pair)]
        for column in declared:
            assert column in record_type.model_fields, f"{record_type.__name__}.{column} is not a column"
            assert str(arrow_schema(record_type).field(column).type) == "string"


@pytest.mark.parametrize("name", sorted(SPIDERS))
def test_policy_becomes_the_spider_settings(name):
    spider = SPIDERS[name]
    settings = spider.custom_settings
    assert settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == spider.declaration.policy.concurrency
    assert settings["RETRY_TIMES"] == spider.declaration.policy.retries
    assert settings["DOWNLOAD_MAXSIZE"] == spider.declaration.policy.max_response_bytes


@pytest.mark.parametrize("name", sorted(SPIDERS))
def test_spider_settings_keep_the_platform_components(name):
    """A spider's custom_settings must not replace the project's component dicts (Scrapy does not merge them)."""
    settings = get_project_settings()
    SPIDERS[name].update_settings(settings)
    middlewares = settings.getwithbase("DOWNLOADER_MIDDLEWARES")
    assert middlewares["scrapy.downloadermiddlewares.retry.RetryMiddleware"] is None
    assert middlewares["crawler.middlewares.retry.BackoffRetryMiddleware"]
    assert middlewares["crawler.middlewares.proxies.ProxyRotationMiddleware"]
    pipelines = settings.getwithbase("ITEM_PIPELINES")
    assert (
        pipelines["crawler.pipelines.store.StorePipeline"] > pipelines["crawler.pipelines.normalize.NormalizePipeline"]
    )


def test_a_setting_of_the_wrong_type_is_one_clear_error():
    with pytest.raises(SettingError, match=r"^NPM_CHANGES_PAGE_SIZE: expected an integer, got 'many'$"):
        SOURCES["npm"].read_settings({"NPM_CHANGES_PAGE_SIZE": "many"})
    with pytest.raises(SettingError, match=r"NPM_SEQ_RESET: expected one of rewind, fail, got 'later'"):
        SOURCES["npm"].read_settings({"NPM_SEQ_RESET": "later"})
    with pytest.raises(SettingError, match=r"GITHUB_COMMIT_STATS: expected true or false"):
        SOURCES["github"].read_settings({"GITHUB_COMMIT_STATS": "sometimes"})
    secret = Setting("X_TOKEN", "a token", "int", secret=True)
    with pytest.raises(SettingError, match=r"got '\*\*\*'"):  # a secret's value is never echoed
        secret.parse("hunter2")
    assert SOURCES["npm"].read_settings({"NPM_CHANGES_PAGE_SIZE": "25"})["NPM_CHANGES_PAGE_SIZE"] == 25


def test_a_bad_setting_stops_the_crawl_before_it_starts(workspace):
    result = workspace.crawl("npm", "packages=left-pad", settings={"NPM_STALE_RETRIES": "often"}, check=False)
    assert result.returncode != 0
    assert "NPM_STALE_RETRIES: expected an integer, got 'often'" in result.stderr
    assert "AttributeError" not in result.stderr
    assert not (workspace.data / "npm").exists()


def test_generated_files_are_up_to_date():
    assert docs.stale(ROOT) == [], "generated files are stale: run `scrapy docs`"


def test_generated_files_follow_the_declarations(monkeypatch):
    text = docs.readme_tables(SOURCES)
    for source in SOURCES.values():
        for setting in source.settings:
            assert f"| `{setting.name}` |" in text
    units = docs.systemd_units(SOURCES)
    scheduled = {name for name, source in SOURCES.items() if source.schedule is not None}
    assert {path.name for path in units} == {f"ingestion-{n}.{k}" for n in scheduled for k in ("service", "timer")}
    assert "GITHUB_TOKENS=\n" in docs.env_section(SOURCES)  # a secret never gets a value in the example


# -- bad input: every callback, hostile answers -------------------------------------------------

SHAPES = {
    "server_error": (500, b"Internal Server Error", "text/plain"),
    "empty": (200, b"", "application/json"),
    "garbage": (200, b"\x00\xff{{not json at all", "application/octet-stream"),
    "html": (200, b"<!doctype html><html><body><h1>Welcome</h1><p>Sign in</p></body></html>", "text/html"),
    "null": (200, b"null", "application/json"),
    "deep": (200, b"[" * 5000 + b"]" * 5000, "application/json"),
}


class _Services:
    """The crawl's services with an empty store and metadata DB, keeping the dead letters' reasons."""

    def __init__(self, folder: Path) -> None:
        self.reasons: list[str] = []
        self.store = open_store(str(folder / "data"))
        self.meta = MetaDB.connect(f"sqlite:///{folder / 'meta.db'}")

    def dead_letter(self, reason: str, **_: Any) -> None:
        self.reasons.append(reason)

    def in_meta_thread(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(func, *args, **kwargs)


def _response(request, shape: str) -> Response:
    status, body, content_type = SHAPES[shape]
    cls = HtmlResponse if content_type == "text/html" else TextResponse
    return cls(request.url, status=status, body=body, headers={"Content-Type": content_type}, request=request)


async def _drain(output: Any) -> list[Any]:
    if output is None:
        return []
    if hasattr(output, "__aiter__"):
        return [item async for item in output]
    return list(output)


def _run_callback(spider, middleware: WorkMiddleware, request, response: Response) -> list[Any]:
    """What Scrapy does with one response: HttpError for an unhandled status (then the errback),
    else the callback, its output read through the work middleware; an exception goes to the
    middleware (and is returned in the output when nothing handles it)."""
    allowed = set(request.meta.get("handle_httpstatus_list", ()))
    recovered: list[Any] = []

    def handle(exc: Exception) -> None:
        handled = middleware.process_spider_exception(response, exc)
        recovered.extend(handled if handled is not None else [exc])

    async def guarded_async(output: Any) -> Any:
        try:
            async for item in output:
                yield item
        except Exception as exc:
            handle(exc)

    def guarded(output: Any) -> Any:
        try:
            yield from output
        except Exception as exc:
            handle(exc)

    async def run() -> list[Any]:
        if not 200 <= response.status < 300 and response.status not in allowed:
            failure = Failure(HttpError(response, "Ignoring non-200 response"))
            failure.request = request
            errback = request.errback or spider.errback
            try:
                return await _drain(errback(failure))
            except Exception as exc:  # a closing errback (CloseSpider) after recording what failed
                return [exc]
        try:
            output = request.callback(response, **request.cb_kwargs)
            if inspect.iscoroutine(output):
                output = await output
        except Exception as exc:
            handle(exc)
            return recovered
        if hasattr(output, "__aiter__"):
            items = [item async for item in middleware.process_spider_output_async(response, guarded_async(output))]
        else:
            items = list(middleware.process_spider_output(response, guarded(output or ())))
        return items + recovered

    return asyncio.run(run())


@pytest.mark.faults
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", sorted(SPIDERS))
def test_every_callback_turns_hostile_answers_into_dead_letters(name, shape, monkeypatch, tmp_path):
    spidercls = SPIDERS[name]
    endpoints = {s.name: "http://127.0.0.1:9/" for s in spidercls.declaration.settings if s.type == "url"}
    crawler = get_crawler(spidercls, {**endpoints, "STORAGE_URI": str(tmp_path)})
    spider = spidercls.from_crawler(crawler, **spidercls.smoke_arguments)
    crawler.spider = spider
    dead = _Services(tmp_path)
    cursors = Cursors(crawler)
    monkeypatch.setattr(SourceSpider, "services", property(lambda self: dead))
    monkeypatch.setattr(SourceSpider, "cursors", property(lambda self: cursors))
    middleware = WorkMiddleware(crawler, cursors)

    requests = spider.smoke_requests()
    callbacks = {
        name
        for name, _ in inspect.getmembers(spidercls, inspect.isfunction)
        if name.startswith("parse_") and not hasattr(SourceSpider, name)
    }
    assert {r.callback.__name__ for r in requests} == callbacks, "smoke_requests() must cover every parse_* callback"
    for request in requests:
        spider.cursor_page("after", [request], key="smoke", stream=request.callback.__name__)
        before = len(dead.reasons)
        output = _run_callback(spider, middleware, request, _response(request, shape))
        records = [item for item in output if isinstance(item, Record)]
        crashes = [item for item in output if isinstance(item, Exception) and type(item).__name__ != "CloseSpider"]
        label = f"{request.callback.__name__} given {shape}"
        assert not crashes, f"{label} raised {crashes!r}"
        assert len(dead.reasons) > before, f"{label} left no dead letter"
        assert not [r for r in dead.reasons[before:] if r.startswith("callback_error")], f"{label}: {dead.reasons}"
        assert not any(getattr(r, "deleted", False) for r in records), f"{label} stored a tombstone"
        faults.record(name, "hostile answers to every callback (500, empty, garbage, HTML, null, deep)", 1)
        if not any(type(item).__name__ == "CloseSpider" for item in output):
            (done,) = [item for item in output if isinstance(item, WorkDone)]  # its unit completes, once
            released = cursors.complete(done)
            if not any(isinstance(item, scrapy.Request) for item in output):  # else its page waits for them
                assert released == [Checkpoint(name, "after", "smoke")], f"{label}: its page must be done"


def test_a_source_brings_its_own_components_into_the_crawl_settings():
    """A transport (download handler) or a middleware of a source joins the project's components, and
    survives Scrapy re-applying the process's settings to the crawler."""
    own = Source(
        name="example",
        title="an example source",
        records=SOURCES["npm"].records,
        policy=SOURCES["npm"].policy,
        settings=(Setting("EXAMPLE_LIMIT", "a limit", "int", 5),),
        download_handlers={"whois": "example.handlers.WhoisDownloadHandler"},
        downloader_middlewares={"example.middleware.Budget": 555},
    )

    class ExampleSpider(SourceSpider):
        declaration = own

    settings = get_project_settings()
    ExampleSpider.update_settings(settings)
    settings.update(get_project_settings())  # what CrawlerProcess.create_crawler does
    assert settings.getwithbase("DOWNLOAD_HANDLERS")["whois"] == "example.handlers.WhoisDownloadHandler"
    assert settings.getwithbase("DOWNLOAD_HANDLERS")["http"]  # the project's own stay
    assert settings.getwithbase("DOWNLOADER_MIDDLEWARES")["example.middleware.Budget"] == 555
    assert settings.getwithbase("DOWNLOADER_MIDDLEWARES")["crawler.middlewares.retry.BackoffRetryMiddleware"]
    assert settings.get("EXAMPLE_LIMIT") == 5 and ExampleSpider.name == "example"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@127.0.0.1/api/",
        "https://127.0.0.1/api/?access_token=hunter2",
        "http://x.test/?key=hunter2",
    ],
)
def test_an_endpoint_carrying_a_credential_is_refused_without_echoing_it(url):
    with pytest.raises(SettingError) as refused:
        SOURCES["github"].read_settings({"GITHUB_API_URL": url})
    assert "GITHUB_API_URL" in str(refused.value) and "hunter2" not in str(refused.value)
