"""The GitHub namespaces: ``github/profiles``, ``github/repos`` and ``github/commits``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crawler.items.base import Record
from crawler.items.fields import parse_time, string_list, text

MESSAGE_LIMIT = 4096
BIO_LIMIT = 1024


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class GithubProfile(Record):
    """A GitHub user or organization profile (``GET /users/{login}``)."""

    namespace = "github/profiles"
    table = "github_profile"
    key = ("id",)
    version_column = "updated_at"
    domain_columns = ("blog", "email")
    people_columns = (("name", "email"),)

    id: int
    login: str
    type: str | None = None
    name: str | None = None
    email: str | None = None
    company: str | None = None
    blog: str | None = None
    location: str | None = None
    bio: str | None = None
    twitter: str | None = None
    followers: int | None = None
    following: int | None = None
    public_repos: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> GithubProfile:
        return cls(
            id=doc["id"],
            login=doc["login"],
            type=text(doc.get("type")),
            name=text(doc.get("name")),
            email=text(doc.get("email")),
            company=text(doc.get("company")),
            blog=text(doc.get("blog")),
            location=text(doc.get("location")),
            bio=text(doc.get("bio"), BIO_LIMIT),
            twitter=text(doc.get("twitter_username")),
            followers=_int(doc.get("followers")),
            following=_int(doc.get("following")),
            public_repos=_int(doc.get("public_repos")),
            created_at=parse_time(doc.get("created_at")),
            updated_at=parse_time(doc.get("updated_at")),
        )


class GithubRepo(Record):
    """A repository (``GET /repos/{owner}/{repo}``)."""

    namespace = "github/repos"
    table = "github_repo"
    key = ("id",)
    version_column = "updated_at"
    domain_columns = ("homepage",)

    id: int
    full_name: str
    owner: str
    owner_id: int | None = None
    description: str | None = None
    homepage: str | None = None
    language: str | None = None
    topics: list[str] = []
    stars: int | None = None
    forks: int | None = None
    watchers: int | None = None
    open_issues: int | None = None
    license: str | None = None
    default_branch: str | None = None
    archived: bool = False
    fork: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pushed_at: datetime | None = None

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> GithubRepo:
        owner = doc.get("owner") if isinstance(doc.get("owner"), dict) else {}
        license_ = doc.get("license") if isinstance(doc.get("license"), dict) else {}
        spdx = text(license_.get("spdx_id"))
        return cls(
            id=doc["id"],
            full_name=doc["full_name"],
            owner=text(owner.get("login")) or doc["full_name"].split("/")[0],
            owner_id=_int(owner.get("id")),
            description=text(doc.get("description"), MESSAGE_LIMIT),
            homepage=text(doc.get("homepage")),
            language=text(doc.get("language")),
            topics=string_list(doc.get("topics") or []),
            stars=_int(doc.get("stargazers_count")),
            forks=_int(doc.get("forks_count")),
            # `watchers_count` mirrors the stars; subscribers are the real watchers
            watchers=_int(doc.get("subscribers_count", doc.get("watchers_count"))),
            open_issues=_int(doc.get("open_issues_count")),
            license=spdx if spdx and spdx != "NOASSERTION" else text(license_.get("name")),
            default_branch=text(doc.get("default_branch")),
            archived=bool(doc.get("archived")),
            fork=bool(doc.get("fork")),
            created_at=parse_time(doc.get("created_at")),
            updated_at=parse_time(doc.get("updated_at")),
            pushed_at=parse_time(doc.get("pushed_at")),
        )


class GithubCommit(Record):
    """A commit of a repository (list item of ``/repos/{o}/{r}/commits``, or the single-commit form
    with ``stats``, or a commit search result)."""

    namespace = "github/commits"
    table = "github_commit"
    key = ("repo", "sha")
    people_columns = (("author_name", "author_email"), ("committer_name", "committer_email"))

    repo: str
    sha: str
    author_name: str | None = None
    author_email: str | None = None
    author_date: datetime | None = None
    author_login: str | None = None
    committer_name: str | None = None
    committer_email: str | None = None
    committer_date: datetime | None = None
    message: str | None = None
    message_truncated: bool = False
    parents: list[str] = []
    verified: bool | None = None
    additions: int | None = None
    deletions: int | None = None

    @classmethod
    def from_api(cls, doc: dict[str, Any], repo: str) -> GithubCommit:
        commit = doc.get("commit") if isinstance(doc.get("commit"), dict) else {}
        author = commit.get("author") if isinstance(commit.get("author"), dict) else {}
        committer = commit.get("committer") if isinstance(commit.get("committer"), dict) else {}
        verification = commit.get("verification") if isinstance(commit.get("verification"), dict) else {}
        stats = doc.get("stats") if isinstance(doc.get("stats"), dict) else {}
        message = commit.get("message") if isinstance(commit.get("message"), str) else None
        login = doc.get("author").get("login") if isinstance(doc.get("author"), dict) else None
        return cls(
            repo=repo,
            sha=doc["sha"],
            author_name=text(author.get("name")),
            author_email=text(author.get("email")),
            author_date=parse_time(author.get("date")),
            author_login=text(login),
            committer_name=text(committer.get("name")),
            committer_email=text(committer.get("email")),
            committer_date=parse_time(committer.get("date")),
            message=message[:MESSAGE_LIMIT] if message is not None else None,
            message_truncated=message is not None and len(message) > MESSAGE_LIMIT,
            parents=[p["sha"] for p in doc.get("parents") or [] if isinstance(p, dict) and "sha" in p],
            verified=verification.get("verified") if isinstance(verification.get("verified"), bool) else None,
            additions=_int(stats.get("additions")),
            deletions=_int(stats.get("deletions")),
        )
