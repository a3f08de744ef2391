"""The GitHub source: profiles, repositories, commits, and commit search by email domain.

Arguments (``scrapy crawl github -a …``, combinable):

* ``users=login1,login2``: the profiles and their public repositories;
* ``repos=owner/name,…``: the repositories, their commits (incrementally) and their owners' profiles;
* ``domains=example.com,…``: commits whose author email is at the domain (commit search);
* ``from_packages=npm|pypi``: the GitHub repositories named by this platform's stored npm or PyPI
  records (through the query layer), crawled like ``repos``.

Commits are incremental per repository: the ``commits:<owner/name>`` cursor holds the newest committer
date stored, and the next run asks ``?since=`` it. Every response's ``ETag`` is kept (``etag:<path>`` in
``sync_state``) and sent back as ``If-None-Match``; a 304 costs no budget and yields no duplicate record.
Rate limits and tokens are handled by :mod:`crawler.middlewares.github`. Settings: ``GITHUB_API_URL``,
``GITHUB_TOKENS``/``GITHUB_TOKEN``, ``GITHUB_COMMIT_STATS``, ``GITHUB_MAX_WAIT``, ``GITHUB_PROXIES``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import scrapy
from scrapy.exceptions import UsageError
from scrapy.http import Response

from crawler.items.control import Checkpoint
from crawler.items.github import GithubCommit, GithubProfile, GithubRepo
from crawler.pipelines.index import iso_utc
from crawler.policy import SourcePolicy
from crawler.spiders.base import SourceSpider

PER_PAGE = 100
ETAG_PREFIX = "etag:"
_LINK = re.compile(r'<([^>]+)>;\s*rel="([^"]+)"')
_REPO_URL = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+)$")


class GithubSpider(SourceSpider):
    name = "github"
    records = (GithubProfile, GithubRepo, GithubCommit)
    policy = SourcePolicy(
        concurrency=8,  # far under GitHub's 100 concurrent requests: the secondary limits stay quiet
        retries=3,
        retry_http_codes=(429, 500, 502, 503, 504),
        proxies_setting="GITHUB_PROXIES",
        max_response_bytes=50 * 1024 * 1024,
    )
    # unchanged answers (304) yield no record: a run may rightly store nothing (see crawler/monitors)
    monitor_min_items = 0
    # token budgets (crawler.middlewares.github); a component dict here would replace the project's
    custom_settings = {"GITHUB_RATE_LIMITS_ENABLED": True}

    def __init__(
        self,
        users: str | None = None,
        repos: str | None = None,
        domains: str | None = None,
        from_packages: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.users = _split(users)
        self.repos = _split(repos)
        self.domains = [d.lower().lstrip("@") for d in _split(domains)]
        self.from_packages = from_packages
        if from_packages not in (None, "npm", "pypi"):
            raise UsageError("github: from_packages must be npm or pypi")
        if not (self.users or self.repos or self.domains or from_packages):
            raise UsageError("github: give -a users=…, repos=owner/name,…, domains=…, or from_packages=npm|pypi")
        for repo in self.repos:
            if repo.count("/") != 1:
                raise UsageError(f"github: {repo!r} is not owner/name")
        self.etags: dict[str, str] = {}
        self.cursors: dict[str, str] = {}
        self._seen: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> GithubSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        api = crawler.settings.get("GITHUB_API_URL") or "https://api.github.com/"
        spider.api = api if api.endswith("/") else api + "/"
        spider.commit_stats = crawler.settings.getbool("GITHUB_COMMIT_STATS", False)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        state = await self.services.in_meta_thread(self.services.meta.cursors, self.source)
        for row in state:
            key, value = row["cursor_key"], row["cursor_value"]
            if key.startswith(ETAG_PREFIX):
                self.etags[key.removeprefix(ETAG_PREFIX)] = value
            else:
                self.cursors[key] = value
        repos = list(self.repos)
        if self.from_packages:
            urls = await self.services.in_meta_thread(repository_urls, self.services.store, self.from_packages)
            repos += [f"{m[1]}/{m[2]}" for url in urls if (m := _REPO_URL.match(url))]
            self.crawler.stats.set_value("github/repos_from_packages", len(urls))
        for login in self.users:
            yield self.api_request(f"users/{quote(login)}", self.parse_user, with_repos=True)
        for repo in dict.fromkeys(repos):
            yield self.api_request(f"repos/{repo}", self.parse_repo, with_owner=True)
        for domain in self.domains:
            query = urlencode({"q": domain, "sort": "committer-date", "order": "desc", "per_page": PER_PAGE})
            yield self.api_request(f"search/commits?{query}", self.parse_search, domain=domain)

    def api_request(self, path_or_url: str, callback: Any, **cb_kwargs: Any) -> scrapy.Request:
        url = path_or_url if "://" in path_or_url else self.api + path_or_url
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if etag := self.etags.get(_etag_key(url)):
            headers["If-None-Match"] = etag
        return scrapy.Request(
            url,
            callback=callback,
            errback=self.errback,
            headers=headers,
            cb_kwargs=cb_kwargs,
            meta={"handle_httpstatus_list": [304, 404, 409, 451]},
            dont_filter=True,
        )

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """Spider arguments that fetch again the users and repositories of these dead letters."""
        users, repos, ids = {}, {}, []
        for row in failed:
            path = urlsplit(row.get("url") or "").path
            if match := re.search(r"/users/([^/]+)$", path):
                users[match[1]] = True
            elif match := re.search(r"/repos/([^/]+/[^/]+)", path):
                repos[match[1]] = True
            else:
                continue
            ids.append(row["id"])
        arguments = {"users": ",".join(users), "repos": ",".join(repos)}
        return {k: v for k, v in arguments.items() if v}, ids

    # -- callbacks ------------------------------------------------------------------------------

    def parse_user(self, response: Response, with_repos: bool = False) -> Iterator[Any]:
        doc = self.answer(response)
        record = self.build(GithubProfile.from_api, doc, url=response.url, raw=response.body) if doc else None
        if record:
            yield record
        yield from self.remember_etag(response, ok=record is not None)
        if with_repos and response.status in (200, 304):
            login = response.url.rstrip("/").rsplit("/", 1)[1]
            yield self.api_request(f"users/{login}/repos?per_page={PER_PAGE}", self.parse_repo_list)

    def parse_repo_list(self, response: Response) -> Iterator[Any]:
        docs = self.answer(response)
        for doc in docs or []:
            if record := self.build(GithubRepo.from_api, doc, url=response.url):
                yield record
        yield from self.remember_etag(response, ok=docs is not None)
        if next_url := next_link(response):
            yield self.api_request(next_url, self.parse_repo_list)

    def parse_repo(self, response: Response, with_owner: bool = False) -> Iterator[Any]:
        doc = self.answer(response)
        record = self.build(GithubRepo.from_api, doc, url=response.url, raw=response.body) if doc else None
        if record:
            yield record
        yield from self.remember_etag(response, ok=record is not None)
        if response.status not in (200, 304) or (response.status == 200 and record is None):
            return
        full_name = doc["full_name"] if doc else "/".join(urlsplit(response.url).path.split("/")[-2:])
        owner = full_name.split("/")[0]
        if with_owner and owner not in self._seen:
            self._seen.add(owner)
            yield self.api_request(f"users/{quote(owner)}", self.parse_user)
        query = {"per_page": PER_PAGE}
        if since := self.cursors.get(f"commits:{full_name}"):
            query["since"] = since
        yield self.api_request(
            f"repos/{full_name}/commits?{urlencode(query)}", self.parse_commits, repo=full_name, newest=""
        )

    def parse_commits(self, response: Response, repo: str, newest: str) -> Iterator[Any]:
        if response.status == 409:  # an empty repository: nothing to list
            self.crawler.stats.inc_value("github/empty_repos")
            return
        docs = self.answer(response)
        for doc in docs or []:
            if record := self.build(lambda d: GithubCommit.from_api(d, repo), doc, url=response.url):
                if record.committer_date and iso_utc(record.committer_date) > newest:
                    newest = iso_utc(record.committer_date)
                if self.commit_stats:
                    yield self.api_request(f"repos/{repo}/commits/{record.sha}", self.parse_commit, repo=repo)
                else:
                    yield record
        yield from self.remember_etag(response, ok=docs is not None)
        if next_url := next_link(response):
            yield self.api_request(next_url, self.parse_commits, repo=repo, newest=newest)
        elif newest:
            # The last page is done: every commit up to `newest` was yielded before this checkpoint,
            # and the store saves it only once they are written. `since` is inclusive: the next run
            # sees the newest commit again (a duplicate the views hide) rather than risk a gap.
            yield Checkpoint(self.source, newest, f"commits:{repo}")

    def parse_commit(self, response: Response, repo: str) -> Iterator[Any]:
        doc = self.answer(response)
        record = (
            self.build(lambda d: GithubCommit.from_api(d, repo), doc, url=response.url, raw=response.body)
            if doc
            else None
        )
        if record:
            yield record
        yield from self.remember_etag(response, ok=record is not None)

    def parse_search(self, response: Response, domain: str) -> Iterator[Any]:
        doc = self.answer(response)
        suffix = "@" + domain
        for item in (doc or {}).get("items", []):
            repo = (item.get("repository") or {}).get("full_name")
            emails = [
                ((item.get("commit") or {}).get(role) or {}).get("email") or "" for role in ("author", "committer")
            ]
            # free-text search also matches messages: keep only commits by an address at the domain
            by_domain = repo and any(email.lower().endswith(suffix) for email in emails)
            if by_domain and (
                record := self.build(lambda d, r=repo: GithubCommit.from_api(d, r), item, url=response.url)
            ):
                yield record
        if next_url := next_link(response):
            yield self.api_request(next_url, self.parse_search, domain=domain)

    # -- helpers --------------------------------------------------------------------------------

    def answer(self, response: Response) -> Any | None:
        """The JSON body of a 200; None for 304 (unchanged: freshness noted), 404, 409, 451."""
        if response.status == 304:
            self.crawler.stats.inc_value("github/not_modified_skipped")
            return None
        if response.status in (404, 451):
            self.crawler.stats.inc_value(f"github/http_{response.status}")
            self.dead_letter(f"http_{response.status}", url=response.url, payload=response.body)
            return None
        if response.status != 200:
            return None
        return self.parse_json(response)

    def remember_etag(self, response: Response, ok: bool) -> Iterator[Checkpoint]:
        """Save the ETag of a good 200 once its records are stored; re-save it on a 304 (freshness)."""
        etag = response.headers.get(b"ETag") or (
            response.request.headers.get(b"If-None-Match") if response.status == 304 else None
        )
        if etag and (response.status == 304 or (response.status == 200 and ok)):
            yield Checkpoint(self.source, etag.decode(), ETAG_PREFIX + _etag_key(response.request.url))


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _etag_key(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def next_link(response: Response) -> str | None:
    for header in response.headers.getlist(b"Link"):
        for url, rel in _LINK.findall(header.decode()):
            if rel == "next":
                return url
    return None


def repository_urls(store: Any, source: str) -> list[str]:
    from crawler.query.views import connect  # DuckDB is loaded only by the runs that query

    table = {"npm": "npm_package", "pypi": "pypi_package"}[source]
    con = connect(store)
    rows = con.execute(
        f"SELECT DISTINCT repository_url FROM {table} WHERE NOT deleted AND repository_url LIKE 'https://github.com/%'"
    ).fetchall()
    return sorted(url for (url,) in rows)
