"""Tests of the loopback GitHub fake itself (shapes, pagination, search, rate limits, conditional requests,
faults, determinism, standalone mode)."""

from __future__ import annotations

import base64
import json
import math
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.fakes.github import (
    COMMIT_QUALIFIERS,
    FAULT_NAMES,
    SEARCH_RESULT_CAP,
    FakeGitHub,
    QueryError,
    fake_github,  # noqa: F401  (fixture, used by name below)
    parse_commit_query,
    user_login,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "token reader"}
LINK_RE = re.compile(r'<([^>]+)>; rel="(\w+)"')
REQUEST_ID_RE = re.compile(r"^[0-9A-F]{4}:[0-9A-F]+:[0-9A-F]+:[0-9A-F]+:[0-9A-F]+$")

# Keys the real endpoints return (checked against the recorded samples), as a subset the fake must carry.
USER_KEYS = {
    "login",
    "id",
    "node_id",
    "avatar_url",
    "gravatar_id",
    "url",
    "html_url",
    "repos_url",
    "type",
    "site_admin",
    "name",
    "company",
    "blog",
    "location",
    "email",
    "hireable",
    "bio",
    "twitter_username",
    "public_repos",
    "public_gists",
    "followers",
    "following",
    "created_at",
    "updated_at",
}
REPO_KEYS = {
    "id",
    "node_id",
    "name",
    "full_name",
    "private",
    "owner",
    "html_url",
    "description",
    "fork",
    "url",
    "commits_url",
    "created_at",
    "updated_at",
    "pushed_at",
    "homepage",
    "size",
    "stargazers_count",
    "watchers_count",
    "language",
    "forks_count",
    "archived",
    "disabled",
    "open_issues_count",
    "license",
    "topics",
    "visibility",
    "default_branch",
    "network_count",
    "subscribers_count",
}
COMMIT_KEYS = {"sha", "node_id", "commit", "url", "html_url", "comments_url", "author", "committer", "parents"}


class Clock:
    """A settable clock to inject as ``clock=``."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def get_json(url: str, headers: Mapping[str, str] | None = AUTH) -> tuple[int, Any, Any]:
    status, h, body = get(url, headers)
    return status, h, json.loads(body) if body else None


def links(headers: Any) -> dict[str, str]:
    return {rel: url for url, rel in LINK_RE.findall(headers.get("Link", ""))}


def walk(url: str, headers: Mapping[str, str] | None = AUTH) -> tuple[list[Any], int]:
    """Follow rel="next" from ``url``; returns the concatenated items and the number of pages fetched."""
    items: list[Any] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        status, h, body = get_json(next_url, headers)
        assert status == 200, body
        items += body["items"] if isinstance(body, dict) else body
        pages += 1
        next_url = links(h).get("next")
    return items, pages


def rate(h: Any) -> tuple[int, int, int, int, str]:
    return (
        int(h["X-RateLimit-Limit"]),
        int(h["X-RateLimit-Remaining"]),
        int(h["X-RateLimit-Reset"]),
        int(h["X-RateLimit-Used"]),
        h["X-RateLimit-Resource"],
    )


def q(text: str) -> str:
    return quote(text, safe="")


@pytest.fixture(scope="module")
def shared() -> Iterator[FakeGitHub]:
    """Read-only tests share one server (any token is valid; a generous search budget)."""
    with FakeGitHub(users=12, repos_per_user=3, commits_per_repo=23, seed=7, search_budget=10_000).serve() as fake:
        yield fake


def a_repo(fake: FakeGitHub) -> str:
    """A generated repository with commits that is not blocked."""
    bad = set(fake.empty_repos) | set(fake.blocked_repos)
    return next(r for r in fake.repo_names(user_login(1)) if r not in bad)


# ------------------------------------------------------------------------------------------ shapes


def test_user_shape_and_headers(shared: FakeGitHub) -> None:
    status, h, user = get_json(shared.url + "users/user-0001")
    assert status == 200
    assert set(user) >= USER_KEYS
    assert user["login"] == "user-0001" and user["type"] == "User" and user["public_repos"] == 3
    assert user["url"] == shared.url + "users/user-0001"
    assert base64.b64decode(user["node_id"]).decode() == f"04:User{user['id']}"
    assert h["Content-Type"] == "application/json; charset=utf-8"
    assert h["ETag"].startswith('W/"') and len(h["ETag"]) == 64 + 4
    assert parsedate_to_datetime(h["Last-Modified"]).strftime("%Y-%m-%dT%H:%M:%SZ") == user["updated_at"]
    assert REQUEST_ID_RE.match(h["X-GitHub-Request-Id"])
    limit, remaining, reset, used, resource = rate(h)
    assert (limit, resource) == (5000, "core") and remaining + used == limit and reset > time.time()
    # Logins are case-insensitive; /user/{id} (the form Link headers use) is the same account.
    assert get_json(shared.url + "users/USER-0001")[2] == user
    assert get_json(shared.url + f"user/{user['id']}")[2] == user
    org = get_json(shared.url + "users/" + user_login(5))[2]
    assert org["type"] == "Organization" and base64.b64decode(org["node_id"]).startswith(b"12:Organization")


def test_user_field_variety(shared: FakeGitHub) -> None:
    users = [shared.user(login) for login in shared.logins()]
    assert len(users) == 12
    emails = [u["email"] for u in users if u is not None]
    assert None in emails and any(emails)
    assert len({u["id"] for u in users if u is not None}) == 12


def test_repo_shape(shared: FakeGitHub) -> None:
    name = a_repo(shared)
    status, h, repo = get_json(shared.url + f"repos/{name}")
    assert status == 200 and set(repo) >= REPO_KEYS
    assert repo["full_name"] == name and repo["owner"]["login"] == name.split("/")[0]
    assert repo["watchers_count"] == repo["stargazers_count"] and repo["visibility"] == "public"
    assert parsedate_to_datetime(h["Last-Modified"]).strftime("%Y-%m-%dT%H:%M:%SZ") == repo["updated_at"]
    assert get_json(shared.url + f"repositories/{repo['id']}")[2] == repo
    licenses = [shared.repo(n)["license"] for n in shared.repo_names()]  # type: ignore[index]
    assert None in licenses
    assert all({"key", "name", "spdx_id"} <= set(lic) for lic in licenses if lic is not None)
    assert any(lic is not None for lic in licenses)
    org_repo = shared.repo(shared.repo_names(user_login(5))[0])
    assert org_repo is not None and org_repo["organization"]["login"] == user_login(5)


def test_commit_list_and_detail_shapes(shared: FakeGitHub) -> None:
    name = a_repo(shared)
    status, h, commits = get_json(shared.url + f"repos/{name}/commits")
    assert status == 200 and len(commits) == 23 and "Link" not in h
    for c in commits:
        assert set(c) >= COMMIT_KEYS
        assert set(c["commit"]["author"]) == {"name", "email", "date"}
        assert {"verified", "reason"} <= set(c["commit"]["verification"])
        assert c["author"] is None or {"login", "id"} <= set(c["author"])
    dates = [c["commit"]["committer"]["date"] for c in commits]
    assert dates == sorted(dates, reverse=True)
    assert [p["sha"] for p in commits[0]["parents"]][:1] == [commits[1]["sha"]]
    assert commits[-1]["parents"] == []

    status, h, detail = get_json(shared.url + f"repos/{name}/commits/{commits[3]['sha']}")
    assert status == 200 and detail["sha"] == commits[3]["sha"]
    stats, files = detail["stats"], detail["files"]
    assert stats["total"] == stats["additions"] + stats["deletions"]
    assert sum(f["additions"] for f in files) == stats["additions"]
    assert all({"filename", "status", "additions", "deletions", "changes", "sha"} <= set(f) for f in files)
    # A short sha and the default branch name resolve too.
    assert get_json(shared.url + f"repos/{name}/commits/{commits[3]['sha'][:7]}")[2]["sha"] == commits[3]["sha"]
    branch = shared.repo(name)["default_branch"]  # type: ignore[index]
    assert get_json(shared.url + f"repos/{name}/commits/{branch}")[2]["sha"] == commits[0]["sha"]


def test_commit_variety(shared: FakeGitHub) -> None:
    every = [c for n in shared.repo_names() if n not in shared.empty_repos for c in shared.commits(n)]
    emails = {c["commit"]["author"]["email"] for c in every}
    domains = {e.rsplit("@", 1)[1] for e in emails}
    assert {"example.com", "corp.example"} <= domains
    assert any(d.endswith(".example") and d not in ("corp.example", "mail.example") for d in domains)  # own
    assert any(c["author"] is None for c in every) and any(c["author"] is not None for c in every)
    assert any(c["committer"] and c["committer"]["login"] == "web-flow" for c in every)
    assert any(len(c["parents"]) == 2 for c in every)  # merge commits
    assert {c["commit"]["verification"]["verified"] for c in every} == {True, False}


# ------------------------------------------------------------------------------------------ pagination


def test_commit_pagination_walks_every_page(shared: FakeGitHub) -> None:
    name = a_repo(shared)
    repo_id = shared.repo(name)["id"]  # type: ignore[index]
    status, h, first = get_json(shared.url + f"repos/{name}/commits?per_page=7")
    rels = links(h)
    assert status == 200 and len(first) == 7 and set(rels) == {"next", "last"}
    # Like GitHub, the links use the /repositories/{id} form and keep the other parameters.
    assert rels["next"] == shared.url + f"repositories/{repo_id}/commits?per_page=7&page=2"
    assert rels["last"].endswith("page=4")
    h2 = get(rels["next"], AUTH)[1]
    assert set(links(h2)) == {"prev", "next", "last", "first"}
    h4 = get(rels["last"], AUTH)[1]
    assert set(links(h4)) == {"prev", "first"}
    items, pages = walk(shared.url + f"repos/{name}/commits?per_page=7")
    assert pages == 4 and [c["sha"] for c in items] == [c["sha"] for c in shared.commits(name)]
    assert get_json(shared.url + f"repos/{name}/commits?per_page=7&page=9")[2] == []
    # per_page is capped at 100: one page, no Link.
    assert "Link" not in get(shared.url + f"repos/{name}/commits?per_page=500", AUTH)[1]


def test_user_repos_pagination_and_sort(shared: FakeGitHub) -> None:
    login = user_login(2)
    uid = shared.user(login)["id"]  # type: ignore[index]
    status, h, page1 = get_json(shared.url + f"users/{login}/repos?per_page=2")
    assert status == 200 and len(page1) == 2
    assert links(h)["next"] == shared.url + f"user/{uid}/repos?per_page=2&page=2"
    items, pages = walk(shared.url + f"users/{login}/repos?per_page=2")
    assert pages == 2 and [r["full_name"] for r in items] == sorted(shared.repo_names(login), key=str.lower)
    assert "subscribers_count" not in items[0]  # list items are the short form
    created = get_json(shared.url + f"users/{login}/repos?sort=created&direction=asc")[2]
    assert [r["created_at"] for r in created] == sorted(r["created_at"] for r in created)


def test_since_and_until_filter_by_committer_date(shared: FakeGitHub) -> None:
    name = a_repo(shared)
    all_commits = shared.commits(name)
    since = all_commits[4]["commit"]["committer"]["date"]
    status, _, newer = get_json(shared.url + f"repos/{name}/commits?since={since}")
    assert status == 200 and [c["sha"] for c in newer] == [c["sha"] for c in all_commits[:5]]
    items, pages = walk(shared.url + f"repos/{name}/commits?per_page=2&since={since}")
    assert len(items) == 5 and pages == 3
    until = all_commits[10]["commit"]["committer"]["date"]
    older = get_json(shared.url + f"repos/{name}/commits?until={until}&per_page=100")[2]
    assert [c["sha"] for c in older] == [c["sha"] for c in all_commits[10:]]
    assert get(shared.url + f"repos/{name}/commits?since=yesterday", AUTH)[0] == 422


# ------------------------------------------------------------------------------------------ search


def expected_by_email(fake: FakeGitHub, email: str) -> set[str]:
    return {
        c["sha"]
        for n in fake.repo_names()
        if n not in fake.blocked_repos and n not in fake.empty_repos
        for c in fake.commits(n)
        if c["commit"]["author"]["email"] == email
    }


def test_search_by_author_email(shared: FakeGitHub) -> None:
    email = next(e for e in shared.author_emails() if e.endswith("@corp.example"))
    status, h, body = get_json(shared.url + "search/commits?q=" + q(f"author-email:{email}"))
    assert status == 200 and rate(h)[4] == "search"
    assert set(body) == {"total_count", "incomplete_results", "items"} and body["incomplete_results"] is False
    assert body["total_count"] == len(expected_by_email(shared, email)) > 0
    for item in body["items"]:
        assert set(item) >= COMMIT_KEYS and item["score"] == 1.0
        assert item["commit"]["author"]["email"] == email
        assert {"id", "full_name", "owner"} <= set(item["repository"])
    # Repeated qualifiers of one kind are OR-ed; an explicit OR unions groups.
    other = next(e for e in shared.author_emails() if e.endswith("@example.com"))
    both = get_json(shared.url + "search/commits?q=" + q(f"author-email:{email} author-email:{other}"))[2]
    union = get_json(shared.url + "search/commits?q=" + q(f"author-email:{email} OR author-email:{other}"))[2]
    want = len(expected_by_email(shared, email) | expected_by_email(shared, other))
    assert both["total_count"] == union["total_count"] == want


def test_search_free_text_domain_and_qualifiers(shared: FakeGitHub) -> None:
    items, _ = walk(shared.url + "search/commits?per_page=100&q=corp.example")
    assert items and all(
        "corp.example" in (i["commit"]["message"] + i["commit"]["author"]["email"]).lower() for i in items
    )
    name = a_repo(shared)
    in_repo = get_json(shared.url + "search/commits?q=" + q(f"repo:{name}") + "&per_page=100")[2]
    assert in_repo["total_count"] == 23 and {i["repository"]["full_name"] for i in in_repo["items"]} == {name}
    owner = name.split("/")[0]
    by_user = get_json(shared.url + "search/commits?q=" + q(f"user:{owner}"))[2]
    assert {i["repository"]["owner"]["login"] for i in by_user["items"]} == {owner}
    after = get_json(shared.url + "search/commits?per_page=100&q=" + q(f"repo:{name} committer-date:>=2020-01-01"))[2]
    assert all(i["commit"]["committer"]["date"] >= "2020-01-01" for i in after["items"])
    fixes = get_json(shared.url + "search/commits?q=" + q(f"Fix repo:{name} -author-email:nobody@example.com"))[2]
    assert all("fix" in i["commit"]["message"].lower() for i in fixes["items"])
    asc = get_json(shared.url + "search/commits?sort=author-date&order=asc&q=" + q(f"repo:{name}"))[2]["items"]
    dates = [i["commit"]["author"]["date"] for i in asc]
    assert dates == sorted(dates)


def test_search_pagination_and_blocked_excluded(shared: FakeGitHub) -> None:
    url = shared.url + "search/commits?per_page=50&q=" + q("is:public")
    items, pages = walk(url)
    total = get_json(url)[2]["total_count"]
    assert len(items) == total and pages == math.ceil(total / 50)
    blocked = set(shared.blocked_repos)
    assert blocked and not {i["repository"]["full_name"] for i in items} & blocked


@pytest.mark.parametrize(
    "query",
    ["", "repo:nobody/nothing", "user:no-such-user", 'author-name:"unbalanced', "author-date:>yesterday"],
)
def test_search_validation_failed(shared: FakeGitHub, query: str) -> None:
    status, _, body = get_json(shared.url + "search/commits?q=" + q(query))
    assert status == 422 and body["message"] == "Validation Failed"


def test_search_serves_only_the_first_1000_results() -> None:
    with FakeGitHub(users=28, repos_per_user=3, commits_per_repo=13, seed=2, search_budget=100).serve() as fake:
        url = fake.url + "search/commits?per_page=100&q=is:public"
        status, h, body = get_json(url)
        assert status == 200 and body["total_count"] > SEARCH_RESULT_CAP
        assert links(h)["last"].endswith("page=10")
        assert get_json(url + "&page=10")[0] == 200
        status, _, body = get_json(url + "&page=11")
        assert status == 422 and "first 1000" in body["message"]


def test_query_parser() -> None:
    groups = parse_commit_query('fix "two words" author-email:A@B.example -repo:x/y NOT merge:true OR hash:abc')
    assert len(groups) == 2
    keys = [(c.key, c.value, c.negate) for c in groups[0]]
    assert keys == [
        ("", "fix", False),
        ("", "two words", False),
        ("author-email", "a@b.example", False),
        ("repo", "x/y", True),
        ("merge", "true", True),
    ]
    (lo, hi) = parse_commit_query("author-date:2020-01-01..2020-01-31")[0][0].value
    assert (hi - lo) == 31 * 86_400
    assert parse_commit_query("committer-date:>2020-01-01")[0][0].value[0] == 1_577_923_200  # 2020-01-02
    assert {"author-email", "committer-email", "author-date", "repo", "user", "org"} <= COMMIT_QUALIFIERS
    for bad in ("", "   ", "author-date:soon", "repo:"):
        with pytest.raises(QueryError):
            parse_commit_query(bad)


# ------------------------------------------------------------------------------------------ conditional requests


def test_etag_304_spends_no_authenticated_budget() -> None:
    with FakeGitHub(users=3, tokens={"t": 100}).serve() as fake:
        auth = {"Authorization": "token t"}
        status, h, _ = get(fake.url + "users/user-0000", auth)
        etag, remaining = h["ETag"], rate(h)[1]
        assert status == 200 and remaining == 99
        status, h, body = get(fake.url + "users/user-0000", {**auth, "If-None-Match": etag})
        assert status == 304 and body == b"" and h["ETag"] == etag
        assert rate(h)[1] == 99 and fake.remaining("t") == 99 and fake.spent["t"] == 1 and fake.not_modified == 1
        # Strong/weak forms and lists match (weak comparison); a stale tag does not.
        assert get(fake.url + "users/user-0000", {**auth, "If-None-Match": f'"x", {etag[2:]}'})[0] == 304
        assert get(fake.url + "users/user-0000", {**auth, "If-None-Match": 'W/"stale"'})[0] == 200
        assert get(fake.url + "users/user-0000", {**auth, "If-Modified-Since": h["Last-Modified"]})[0] == 304
        assert fake.remaining("t") == 98
        # Anonymous 304s still cost budget, as on GitHub.
        status, h, _ = get(fake.url + "users/user-0000", {"If-None-Match": etag})
        assert status == 304 and rate(h)[:2] == (60, 59)


def test_mutations_change_etags() -> None:
    with FakeGitHub(users=3, commits_per_repo=5).serve() as fake:
        name = fake.repo_names(user_login(0))[0]
        repo_etag = get(fake.url + f"repos/{name}", AUTH)[1]["ETag"]
        list_etag = get(fake.url + f"repos/{name}/commits", AUTH)[1]["ETag"]
        user_etag = get(fake.url + "users/user-0000", AUTH)[1]["ETag"]
        new = fake.add_commits(name, 2)
        status, h, _ = get(fake.url + f"repos/{name}", {**AUTH, "If-None-Match": repo_etag})
        assert status == 200 and h["ETag"] != repo_etag
        status, h, body = get(fake.url + f"repos/{name}/commits", {**AUTH, "If-None-Match": list_etag})
        assert status == 200 and h["ETag"] != list_etag
        shas = [c["sha"] for c in json.loads(body)]
        assert shas[:2] == new and len(shas) == 7
        head = json.loads(body)[0]["commit"]["committer"]["date"]
        assert get_json(fake.url + f"repos/{name}")[2]["pushed_at"] == head
        email = json.loads(body)[0]["commit"]["author"]["email"]
        found = get_json(fake.url + "search/commits?per_page=100&q=" + q(f"author-email:{email}"))[2]
        assert new[0] in {i["sha"] for i in found["items"]}  # pushed commits are searchable
        assert get(fake.url + "users/user-0000", {**AUTH, "If-None-Match": user_etag})[0] == 304
        fake.touch_user("user-0000")
        status, h, _ = get(fake.url + "users/user-0000", {**AUTH, "If-None-Match": user_etag})
        assert status == 200 and h["ETag"] != user_etag
        # Pushing to an empty repository makes it listable.
        assert get(fake.url + f"repos/{FakeGitHub.EMPTY_REPO}/commits", AUTH)[0] == 409
        fake.add_commits(FakeGitHub.EMPTY_REPO, 1)
        assert get(fake.url + f"repos/{FakeGitHub.EMPTY_REPO}/commits", AUTH)[0] == 200


# ------------------------------------------------------------------------------------------ rate limits


def test_core_budget_exhaustion_and_reset() -> None:
    clock = Clock(1_700_000_000.5)
    with FakeGitHub(users=2, tokens={"t": 5, "u": 7}, window=100, clock=clock).serve() as fake:
        auth = {"Authorization": "Bearer t"}
        seen = []
        for _ in range(5):
            status, h, _ = get(fake.url + "users/user-0000", auth)
            assert status == 200
            seen.append(rate(h))
        assert [r[1] for r in seen] == [4, 3, 2, 1, 0] and [r[3] for r in seen] == [1, 2, 3, 4, 5]
        reset = seen[0][2]
        assert reset == math.ceil(clock.t + 100) and {r[2] for r in seen} == {reset}
        assert fake.requests_after_exhaustion("t") == 0

        status, h, body = get_json(fake.url + f"repos/{fake.repo_names()[0]}", auth)
        assert status == 403 and rate(h) == (5, 0, reset, 5, "core")
        assert body["message"].startswith("API rate limit exceeded for user ID ")
        assert h["X-GitHub-Request-Id"] in body["message"] and "rate-limits" in body["documentation_url"]
        assert fake.requests_after_exhaustion("t") == 1 and fake.spent["t"] == 5
        # /rate_limit stays free and is not a violation; another token is unaffected.
        status, _, limits = get_json(fake.url + "rate_limit", auth)
        assert status == 200 and limits["rate"] == {"limit": 5, "used": 5, "remaining": 0, "reset": reset}
        assert get(fake.url + "users/user-0000", {"Authorization": "token u"})[0] == 200
        assert fake.requests_after_exhaustion("t") == 1

        clock.t = reset - 0.5  # not yet
        assert get(fake.url + "users/user-0000", auth)[0] == 403
        assert fake.requests_after_exhaustion("t") == 2
        clock.t = reset  # the announced second: a fresh budget and a new window
        status, h, _ = get(fake.url + "users/user-0000", auth)
        assert status == 200 and rate(h) == (5, 4, reset + 100, 1, "core")
        assert fake.requests_after_exhaustion("t") == 2
        fake.advance(100)
        assert fake.remaining("t") == 5 and fake.reset_time("t") == reset + 200


def test_anonymous_budget_is_shared() -> None:
    with FakeGitHub(users=2, anonymous_budget=3).serve() as fake:
        assert [rate(get(fake.url + "users/user-0000")[1])[1] for _ in range(3)] == [2, 1, 0]
        status, h, body = get_json(fake.url + "users/user-0001", None)
        assert status == 403 and rate(h)[:2] == (3, 0)
        assert body["message"].startswith("API rate limit exceeded for 127.0.0.1.")
        assert fake.requests_after_exhaustion() == 1 and fake.requests_after_exhaustion(FakeGitHub.ANONYMOUS) == 1
        assert get(fake.url + "users/user-0000", AUTH)[0] == 200  # a token has its own budget


@pytest.mark.parametrize("limit_status", [403, 429])
def test_search_budget_per_minute(limit_status: int) -> None:
    clock = Clock(1_700_000_000.0)
    with FakeGitHub(users=3, search_budget=3, clock=clock, search_limit_status=limit_status).serve() as fake:
        url = fake.url + "search/commits?q=is:public"
        remaining = [rate(get(url, AUTH)[1]) for _ in range(3)]
        assert [r[1] for r in remaining] == [2, 1, 0] and {r[4] for r in remaining} == {"search"}
        assert remaining[0][2] == 1_700_000_060
        status, h, body = get_json(url)
        assert status == limit_status and rate(h)[1:2] == (0,) and rate(h)[4] == "search"
        assert "API rate limit exceeded" in body["message"]
        assert fake.requests_after_exhaustion("reader") == 1
        assert get(fake.url + "users/user-0000", AUTH)[0] == 200  # core is a separate budget
        assert fake.remaining("reader") == 4999 and fake.remaining("reader", "search") == 0
        fake.advance(60)
        assert get(url, AUTH)[0] == 200 and fake.requests_after_exhaustion("reader") == 1


def test_secondary_rate_limit_with_retry_after() -> None:
    with FakeGitHub(users=2, secondary_every=3).serve() as fake:
        url = fake.url + "users/user-0000"
        assert [get(url, AUTH)[0] for _ in range(2)] == [200, 200]
        status, h, body = get_json(url)
        assert status == 403 and h["Retry-After"] == "1"
        assert body["message"].startswith("You have exceeded a secondary rate limit")
        assert fake.spent["reader"] == 2 and rate(h)[1] == 4998  # not charged
        assert get(url, AUTH)[0] == 200 and fake.requests_before_retry_after("reader") == 1
        time.sleep(1.05)
        assert get(url, AUTH)[0] == 200 and fake.requests_before_retry_after("reader") == 1
        assert get(url, AUTH)[0] == 403  # every third request


def test_bad_credentials() -> None:
    with FakeGitHub(users=2, tokens={"good": 10}).serve() as fake:
        url = fake.url + "users/user-0000"
        status, h, body = get_json(url, {"Authorization": "token nope"})
        assert status == 401 and body["message"] == "Bad credentials"
        assert rate(h)[0] == 60  # what the anonymous budget shows
        assert get(url, {"Authorization": "Bearer good"})[0] == 200
        basic = base64.b64encode(b"someone:good").decode()
        assert get(url, {"Authorization": f"Basic {basic}"})[0] == 200
        assert get(url, {"Authorization": "Digest good"})[0] == 401
        assert fake.spent == {"good": 2} and fake.requests_after_exhaustion("nope") == 0
    with FakeGitHub(users=2).serve() as fake:  # tokens=None: any token but the revoked one
        assert get(fake.url + "users/user-0000", {"Authorization": "token whatever"})[0] == 200
        assert get(fake.url + "users/user-0000", {"Authorization": f"token {FakeGitHub.REVOKED_TOKEN}"})[0] == 401


def test_rate_limit_endpoint_is_free(shared: FakeGitHub) -> None:
    token = {"Authorization": "token rate-reader"}
    get(shared.url + "users/user-0000", token)
    before = shared.remaining("rate-reader")
    for _ in range(5):
        status, h, body = get_json(shared.url + "rate_limit", token)
        assert status == 200 and rate(h)[4] == "core" and rate(h)[1] == before
    assert {"core", "search", "graphql", "code_search"} <= set(body["resources"])
    assert body["rate"] == body["resources"]["core"] and body["resources"]["search"]["limit"] == 10_000
    assert shared.remaining("rate-reader") == before and shared.spent["rate-reader"] == 1


# ------------------------------------------------------------------------------------------ faults


def test_status_faults(shared: FakeGitHub) -> None:
    status, _, body = get_json(shared.url + f"users/{FakeGitHub.MISSING_USER}")
    assert status == 404 and body["message"] == "Not Found" and body["documentation_url"].startswith("https://")
    assert get(shared.url + f"repos/{FakeGitHub.MISSING_REPO}", AUTH)[0] == 404
    assert get(shared.url + f"repos/{FakeGitHub.MISSING_REPO}/commits", AUTH)[0] == 404
    assert get(shared.url + "no/such/route", AUTH)[0] == 404

    status, _, repo = get_json(shared.url + f"repos/{FakeGitHub.EMPTY_REPO}")
    assert status == 200 and repo["size"] == 0
    status, _, body = get_json(shared.url + f"repos/{FakeGitHub.EMPTY_REPO}/commits")
    assert status == 409 and body["message"] == "Git Repository is empty."
    assert FakeGitHub.EMPTY_REPO in shared.empty_repos

    for name in shared.blocked_repos:
        for suffix in ("", "/commits", "/commits/main"):
            status, _, body = get_json(shared.url + f"repos/{name}{suffix}")
            assert status == 451 and body["message"] == "Repository access blocked" and body["block"]["reason"]
    assert FakeGitHub.BLOCKED_REPO in shared.blocked_repos and len(shared.blocked_repos) == 2

    status, _, body = get_json(shared.url + f"repos/{a_repo(shared)}/commits/deadbeef")
    assert status == 422 and body["message"] == "No commit found for SHA: deadbeef"
    assert FakeGitHub.FAULT_OWNER in get_json(shared.url + f"users/{FakeGitHub.FAULT_OWNER}")[2]["login"]
    assert set(FAULT_NAMES) >= {FakeGitHub.EMPTY_REPO, FakeGitHub.BLOCKED_REPO, FakeGitHub.MISSING_USER}


def test_failures_cost_budget_like_github() -> None:
    with FakeGitHub(users=2, tokens={"t": 50}).serve() as fake:
        auth = {"Authorization": "token t"}
        get(fake.url + f"users/{FakeGitHub.MISSING_USER}", auth)
        get(fake.url + f"repos/{FakeGitHub.EMPTY_REPO}/commits", auth)
        get(fake.url + f"repos/{FakeGitHub.BLOCKED_REPO}", auth)
        assert fake.spent["t"] == 3 and fake.remaining("t") == 47


# ------------------------------------------------------------------------------------------ counters


def test_counters_and_log() -> None:
    clock = Clock(1_800_000_000.0)
    with FakeGitHub(users=2, commits_per_repo=3, clock=clock, log_size=4).serve() as fake:
        name = fake.repo_names(user_login(0))[0]
        sha = fake.commits(name)[0]["sha"]
        for path in (
            "users/user-0000",
            "users/user-0000/repos",
            f"repos/{name}",
            f"repos/{name}/commits",
            f"repos/{name}/commits/{sha}",
            "search/commits?q=is:public",
            "rate_limit",
        ):
            assert get(fake.url + path, AUTH)[0] == 200
        assert fake.requests == {k: 1 for k in ("user", "user_repos", "repo", "commits", "commit", "search")} | {
            "rate_limit": 1
        }
        assert fake.total_requests == 7 and fake.spent["reader"] == 6
        assert fake.spent_by_resource[("reader", "search")] == 1
        assert fake.log == [
            ("reader", "commits", 200, clock.t),
            ("reader", "commit", 200, clock.t),
            ("reader", "search", 200, clock.t),
            ("reader", "rate_limit", 200, clock.t),
        ]
        fake.reset_counters()
        assert fake.total_requests == 0 and not fake.requests and not fake.log and not fake.spent
        assert fake.remaining("reader") == 4995  # 5 core requests: budgets survive reset_counters
        fake.reset_budgets()
        assert fake.remaining("reader") == 5000


def test_determinism() -> None:
    a, b = FakeGitHub(users=8, seed=3), FakeGitHub(users=8, seed=3)
    assert a.logins() == b.logins() and a.repo_names() == b.repo_names()
    for login in a.logins():
        assert a.user(login) == b.user(login)
    for name in a.repo_names():
        assert a.repo(name) == b.repo(name) and a.commits(name) == b.commits(name)
    assert a.search("corp.example") == b.search("corp.example")
    name = a.repo_names()[0]
    sha = a.commits(name)[0]["sha"]
    assert a.commit(name, sha) == b.commit(name, sha)
    other = FakeGitHub(users=8, seed=4)
    assert [other.user(x) for x in other.logins()] != [a.user(x) for x in a.logins()]
    # The first accounts and their repositories do not depend on how many accounts there are.
    bigger = FakeGitHub(users=12, seed=3)
    assert bigger.user("user-0003") == a.user("user-0003")
    assert [bigger.repo(n) for n in a.repo_names("user-0003")] == [a.repo(n) for n in a.repo_names("user-0003")]


def test_pytest_fixture(fake_github: FakeGitHub) -> None:  # noqa: F811
    assert get(fake_github.url + "users/user-0000", AUTH)[0] == 200


def test_only_loopback() -> None:
    with pytest.raises(ValueError), FakeGitHub(users=1).serve(host="0.0.0.0"):
        pass


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        FakeGitHub(search_limit_status=500)
    with pytest.raises(ValueError):
        FakeGitHub(tokens={FakeGitHub.ANONYMOUS: 1})
    with pytest.raises(ValueError):
        FakeGitHub(secondary_every=0)


# ------------------------------------------------------------------------------------------ standalone


def test_standalone_process() -> None:
    cmd = [
        sys.executable,
        "-m",
        "tests.fakes.github",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--users",
        "4",
        "--seed",
        "2",
        "--tokens",
        "t1,t2:3",
        "--budget",
        "100",
        "--window",
        "3600",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"url", "pid"} and info["pid"] == proc.pid
        assert info["url"].startswith("http://127.0.0.1:") and info["url"].endswith("/")
        status, h, body = get(info["url"] + "users/user-0001", {"Authorization": "token t1"})
        assert status == 200 and json.loads(body)["login"] == "user-0001" and rate(h)[:2] == (100, 99)
        assert rate(get(info["url"] + "users/user-0001", {"Authorization": "token t2"})[1])[:2] == (3, 2)
        assert get(info["url"] + "users/user-0001", {"Authorization": "token t3"})[0] == 401
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
