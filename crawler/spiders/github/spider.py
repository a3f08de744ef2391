"""The GitHub source: profiles, repositories, commits, and commit search by email domain.

Arguments (``scrapy crawl github -a …``, combinable):

* ``users=login1,login2``: the profiles and their public repositories;
* ``repos=owner/name,…``: the repositories, their commits (incrementally) and their owners' profiles;
* ``domains=example.com,…``: commits whose author email is at the domain (commit search);
* ``from_packages=<source>``: the GitHub repositories named by the ``repository_url`` of another
  source's stored records (any source whose records have that column; through the query layer),
  crawled like ``repos``.

Commits are incremental per repository: the ``commits:<owner/name>`` cursor holds the newest committer
date stored, and the next run asks ``?since=`` it. Every response's ``ETag`` is kept (``etag:<path>`` in
``sync_state``) and sent back as ``If-None-Match``; a 304 costs no budget and yields no duplicate record.
Rate limits and tokens are handled by :mod:`.middleware`. Settings: declared in ``source.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import scrapy
from scrapy.exceptions import UsageError
from scrapy.http import Response

from crawler.pipelines.index import iso_utc
from crawler.sources import all_sources
from crawler.spiders.base import SourceSpider
from crawler.spiders.github.records import GithubCommit, GithubProfile, GithubRepo
from crawler.spiders.github.source import SOURCE

PER_PAGE = 100
ETAG_PREFIX = "etag:"
_LINK = re.compile(r'<([^>]+)>;\s*rel="([^"]+)"')
_REPO_URL = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+)$")


class GithubSpider(SourceSpider):
    declaration = SOURCE
    # unchanged answers (304) yield no record: a run may rightly store nothing (see crawler/monitors)
    monitor_min_items = 0

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
        choices = "|".join(package_sources())
        if from_packages is not None and from_packages not in package_sources():
            raise UsageError(f"github: from_packages must be one of {choices}")
        if not (self.users or self.repos or self.domains or from_packages):
            raise UsageError(f"github: give -a users=…, repos=owner/name,…, domains=…, or from_packages={choices}")
        for repo in self.repos:
            if repo.count("/") != 1:
                raise UsageError(f"github: {repo!r} is not owner/name")
        self.etags: dict[str, str] = {}
        self.saved_cursors: dict[str, str] = {}
        self._seen: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> GithubSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        api = spider.options["GITHUB_API_URL"]
        spider.api = api if api.endswith("/") else api + "/"
        spider.commit_stats = spider.options["GITHUB_COMMIT_STATS"]
        return spider

    async def start(self) -> AsyncIterator[Any]:
        state = await self.services.in_meta_thread(self.services.meta.cursors, self.source)
        for row in state:
            key, value = row["cursor_key"], row["cursor_value"]
            if key.startswith(ETAG_PREFIX):
                self.etags[key.removeprefix(ETAG_PREFIX)] = value
            else:
                self.saved_cursors[key] = value
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

    smoke_arguments = {"users": "octo"}

    def smoke_requests(self) -> list[scrapy.Request]:
        return [
            self.api_request("users/octo", self.parse_user, with_repos=True),
            self.api_request("users/octo/repos", self.parse_repo_list),
            self.api_request("repos/octo/tool", self.parse_repo, with_owner=True),
            self.api_request("repos/octo/tool/commits", self.parse_commits, repo="octo/tool"),
            self.api_request("repos/octo/tool/commits/abc", self.parse_commit, repo="octo/tool"),
            self.api_request("search/commits?q=example.com", self.parse_search, domain="example.com"),
        ]

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
        self.remember_etag(response)
        doc = self.answer(response)
        record = self.build(GithubProfile.from_api, doc, response=response, raw=response.body) if doc else None
        if record is not None:
            yield record
        if with_repos and (record is not None or response.status == 304):  # not for a body that was no profile
            login = response.url.rstrip("/").rsplit("/", 1)[1]
            yield self.api_request(f"users/{login}/repos?per_page={PER_PAGE}", self.parse_repo_list)

    def parse_repo_list(self, response: Response) -> Iterator[Any]:
        self.remember_etag(response)
        docs = self.answer(response)
        for doc in docs or []:
            if record := self.build(GithubRepo.from_api, doc, response=response):
                yield record
        if next_url := next_link(response):
            yield self.api_request(next_url, self.parse_repo_list)

    def parse_repo(self, response: Response, with_owner: bool = False) -> Iterator[Any]:
        self.remember_etag(response)
        doc = self.answer(response)
        record = self.build(GithubRepo.from_api, doc, response=response, raw=response.body) if doc else None
        if record:
            yield record
        if response.status not in (200, 304) or (response.status == 200 and record is None):
            return
        full_name = doc["full_name"] if doc else "/".join(urlsplit(response.url).path.split("/")[-2:])
        owner = full_name.split("/")[0]
        if with_owner and owner not in self._seen:
            self._seen.add(owner)
            yield self.independent(self.api_request(f"users/{quote(owner)}", self.parse_user))
        query = {"per_page": PER_PAGE}
        if since := self.saved_cursors.get(f"commits:{full_name}"):
            query["since"] = since
        commits = self.api_request(f"repos/{full_name}/commits?{urlencode(query)}", self.parse_commits, repo=full_name)
        yield self.independent(commits)

    def parse_commits(self, response: Response, repo: str, first: bool = True) -> Iterator[Any]:
        if response.status == 409:  # an empty repository: nothing to list
            self.crawler.stats.inc_value("github/empty_repos")
            return
        self.remember_etag(response)
        docs = self.answer(response)
        records = [
            record
            for doc in docs or []
            if (record := self.build(lambda d: GithubCommit.from_api(d, repo), doc, response=response))
        ]
        newest = max((iso_utc(r.committer_date) for r in records if r.committer_date), default="")
        if first and newest:
            # The list is newest first: the cursor may move to this page's newest commit once every page
            # after it and every commit's detail are stored — and not at all if any of them failed.
            # `since` is inclusive: the next run sees the newest commit again (a duplicate the views
            # hide) rather than risk a gap.
            self.checkpoint(response, newest, key=f"commits:{repo}", hold_on_failure=True)
        for record in records:
            if self.commit_stats:
                yield self.api_request(f"repos/{repo}/commits/{record.sha}", self.parse_commit, repo=repo)
            else:
                yield record
        if next_url := next_link(response):
            yield self.api_request(next_url, self.parse_commits, repo=repo, first=False)

    def parse_commit(self, response: Response, repo: str) -> Iterator[Any]:
        self.remember_etag(response)
        doc = self.answer(response)
        if doc is not None and (
            record := self.build(lambda d: GithubCommit.from_api(d, repo), doc, response=response, raw=response.body)
        ):
            yield record

    def parse_search(self, response: Response, domain: str) -> Iterator[Any]:
        doc = self.answer(response)
        suffix = "@" + domain
        for item in (doc or {}).get("items", []):
            repo = (item.get("repository") or {}).get("full_name")
            addresses = [
                ((item.get("commit") or {}).get(role) or {}).get("email") or "" for role in ("author", "committer")
            ]
            # free-text search also matches messages: keep only commits by an address at the domain
            by_domain = repo and any(email.lower().endswith(suffix) for email in addresses)
            if by_domain and (
                record := self.build(lambda d, r=repo: GithubCommit.from_api(d, r), item, response=response)
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
            self.dead_letter(f"http_{response.status}", response=response, payload=response.body)
            return None
        if response.status != 200:
            return None
        doc = self.parse_json(response)
        if doc is None or isinstance(doc, dict | list):
            return doc
        self.dead_letter("invalid_answer: not an object or a list", response=response, payload=response.body)
        return None

    def remember_etag(self, response: Response) -> None:
        """Save the ETag of a 200 once its records (and what it leads to) are stored, unless any of it
        ended as a dead letter; re-save it on a 304 (freshness)."""
        etag = response.headers.get(b"ETag") or (
            response.request.headers.get(b"If-None-Match") if response.status == 304 else None
        )
        if etag and response.status in (200, 304):
            key = ETAG_PREFIX + _etag_key(response.request.url)
            self.checkpoint(response, etag.decode(), key=key, hold_on_failure=True)


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

    con = connect(store)
    urls: set[str] = set()
    for table in package_sources()[source]:
        rows = con.execute(
            f"SELECT DISTINCT repository_url FROM {table} WHERE NOT deleted AND repository_url LIKE 'https://github.com/%'"
        ).fetchall()
        urls.update(url for (url,) in rows)
    return sorted(urls)


def package_sources() -> dict[str, list[str]]:
    """The other sources whose records name a repository (``repository_url``): their views, by source."""
    return {
        name: tables
        for name, source in all_sources().items()
        if (
            tables := [
                r.table for r in source.records if "repository_url" in r.model_fields and "deleted" in r.model_fields
            ]
        )
    }
