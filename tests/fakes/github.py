"""Loopback fake of the GitHub REST API: the slice a crawler of users, repositories and commits needs.

Serves, with GitHub's response shapes and headers (see ``/work/shared/samples/github`` for recorded ones):

* ``GET /users/{login}`` and ``GET /user/{id}`` (the form GitHub itself uses in ``Link`` headers),
* ``GET /users/{login}/repos`` and ``GET /user/{id}/repos`` (``per_page``/``page``/``sort``/``direction``),
* ``GET /repos/{owner}/{repo}`` and ``GET /repositories/{id}``,
* ``GET /repos/{owner}/{repo}/commits`` (``per_page``/``page``/``sha``/``author``/``since``/``until``),
* ``GET /repos/{owner}/{repo}/commits/{ref}`` (adds ``stats`` and ``files``),
* ``GET /search/commits?q=`` with GitHub's qualifiers (see :func:`parse_commit_query`),
* ``GET /rate_limit`` (free, like the real one).

Like GitHub, paginated lists link to their other pages through ``/repositories/{id}/commits`` and
``/user/{id}/repos``, not the path the client asked for: a client must follow ``Link``, not rebuild URLs.

Rate limits are enforced per token and per resource (``core``, ``search``), with real reset times taken
from an injectable clock; conditional requests answer 304 without spending an authenticated budget.
See :class:`FakeGitHub` for the exact semantics and the fault names.

Three ways to use it::

    with FakeGitHub(users=20, tokens={"t1": 5000}).serve() as fake:     # in-process, background thread
        fetch(fake.url + "users/user-0001", headers={"Authorization": "token t1"})

    def test_x(fake_github): ...                                         # pytest fixture (import it)

    python -m tests.fakes.github --port 0 --users 500 --tokens t1,t2 --budget 5000   # own process
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import hashlib
import math
import random
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread, run_standalone

try:  # the fixture is optional: the standalone process must not need pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

__all__ = [
    "COMMIT_QUALIFIERS",
    "DEFAULT_PER_PAGE",
    "FAULT_NAMES",
    "MAX_PER_PAGE",
    "ROUTE_KINDS",
    "SEARCH_RESULT_CAP",
    "FakeGitHub",
    "QueryError",
    "parse_commit_query",
    "user_login",
]

API_VERSION = "2022-11-28"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = RATE_DOCS + "#about-secondary-rate-limits"
SEARCH_DOCS = "https://docs.github.com/rest/search/search#search-commits"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
SEARCH_RESULT_CAP = 1000  # GitHub serves at most the first 1000 results of any search
ROUTE_KINDS = ("user", "user_repos", "repo", "commits", "commit", "search", "rate_limit", "other")
COMMIT_QUALIFIERS = frozenset(
    {
        "author",
        "committer",
        "author-name",
        "committer-name",
        "author-email",
        "committer-email",
        "author-date",
        "committer-date",
        "merge",
        "hash",
        "parent",
        "tree",
        "is",
        "user",
        "org",
        "repo",
    }
)

ANONYMOUS = "anonymous"
FAULT_OWNER = "fault-owner"
MISSING_USER = "no-such-user"
EMPTY_REPO = f"{FAULT_OWNER}/empty-repo"
BLOCKED_REPO = f"{FAULT_OWNER}/blocked-repo"
MISSING_REPO = f"{FAULT_OWNER}/no-such-repo"
REVOKED_TOKEN = "revoked-token"
FAULT_NAMES: tuple[str, ...] = (FAULT_OWNER, MISSING_USER, EMPTY_REPO, BLOCKED_REPO, MISSING_REPO, REVOKED_TOKEN)

# Every generated timestamp falls in [DATA_START, DATA_END]: bodies never depend on the wall clock.
DATA_START = 1_199_145_600  # 2008-01-01
DATA_END = 1_717_200_000  # 2024-06-01
DAY = 86_400

# GitHub's own account that commits web edits and merges ("GitHub <noreply@github.com>").
WEB_FLOW_LOGIN = "web-flow"
WEB_FLOW_ID = 19_864_447

_EXPOSE = (
    "ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, X-RateLimit-Remaining, "
    "X-RateLimit-Used, X-RateLimit-Resource, X-RateLimit-Reset, X-OAuth-Scopes, X-Accepted-OAuth-Scopes, "
    "X-Poll-Interval, X-GitHub-Media-Type, X-GitHub-SSO, X-GitHub-Request-Id, Deprecation, Sunset"
)

# ------------------------------------------------------------------------------------------------ words


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Uma "
    "Victor Wendy Xavier Yusuf Zoe Amir Bea Chen Dara Emeka Femi Goran Hana Ines Jonas Kofi Lena Mateo Noor"
)
_LAST = _words(
    "Smith Jones Garcia Miller Davis Lopez Wilson Anderson Thomas Taylor Moore Martin Lee Walker Hall Young "
    "King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans Turner"
)
_ADJ = _words("fast tiny simple async lazy smart robust modern light quick secure open micro mini super happy")
_NOUN = _words(
    "parser cache router logger queue client server store toolkit engine bot cli scraper notes dotfiles "
    "blog api sdk crawler index tracker monitor widget compiler shell"
)
_LANGS = ("Python", "Python", "JavaScript", "TypeScript", "Go", "Rust", "Java", "C", "C++", "Ruby", "Shell", None)
_EXT = {
    "Python": "py",
    "JavaScript": "js",
    "TypeScript": "ts",
    "Go": "go",
    "Rust": "rs",
    "Java": "java",
    "C": "c",
    "C++": "cpp",
    "Ruby": "rb",
    "Shell": "sh",
}
_TOPICS = _words("cli api http parser scraping data json database cache testing devops security web tooling")
_LICENSES: tuple[tuple[str, str, str, str] | None, ...] = (
    ("mit", "MIT License", "MIT", "MDc6TGljZW5zZTEz"),
    ("mit", "MIT License", "MIT", "MDc6TGljZW5zZTEz"),
    ("apache-2.0", "Apache License 2.0", "Apache-2.0", "MDc6TGljZW5zZTI="),
    ("gpl-3.0", "GNU General Public License v3.0", "GPL-3.0", "MDc6TGljZW5zZTk="),
    ("bsd-3-clause", 'BSD 3-Clause "New" or "Revised" License', "BSD-3-Clause", "MDc6TGljZW5zZTU="),
    ("other", "Other", "NOASSERTION", "MDc6TGljZW5zZTA="),
    None,
    None,
)
_CITIES = ("Berlin", "Paris, France", "Lagos", "San Francisco, CA", "Tokyo", "São Paulo", "Remote", "Toronto")
_COMPANIES = ("@acme-corp", "Example Inc.", "Initech", "@globex", "Umbrella Labs", "Freelance")
_VERBS = _words("Fix Add Update Refactor Remove Improve Bump Document Test Simplify")
_OBJECTS = (
    "parser",
    "cache layer",
    "CLI options",
    "README",
    "CI workflow",
    "error handling",
    "dependency versions",
    "logging",
    "type hints",
    "release notes",
    "retry logic",
    "config loader",
)
_EXTERNAL_DOMAINS = ("example.com", "corp.example", "mail.example")


def user_login(i: int) -> str:
    """Login of the i-th generated account; every 7th (i % 7 == 5) is an organization."""
    return f"org-{i:04d}" if i % 7 == 5 else f"user-{i:04d}"


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _node_id(prefix: str, kind: str, ident: str | int) -> str:
    # GitHub's legacy global ids are base64 of "<len><kind><id>" (e.g. "04:User327146").
    return base64.b64encode(f"{prefix}:{kind}{ident}".encode()).decode()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ model


@dataclass(slots=True, eq=False)
class _User:
    index: int  # position among the generated accounts (-1 for fault ones)
    login: str
    id: int
    type: str  # "User" or "Organization"
    name: str | None
    email: str | None  # public profile email
    commit_emails: tuple[str, ...]  # what their commits carry (the first is the usual one)
    company: str | None
    blog: str
    location: str | None
    bio: str | None
    twitter_username: str | None
    hireable: bool | None
    followers: int
    following: int
    public_gists: int
    created_at: int
    updated_at: int
    repos: list[_Repo] = field(default_factory=list)
    touches: int = 0


@dataclass(slots=True, eq=False)
class _Repo:
    id: int
    name: str
    owner: _User
    description: str | None
    homepage: str | None
    language: str | None
    topics: list[str]
    license: tuple[str, str, str, str] | None
    stars: int
    forks: int
    subscribers: int
    open_issues: int
    size: int
    archived: bool
    fork: bool
    default_branch: str
    created_at: int
    updated_at: int
    pushed_at: int
    base_commits: int  # commits generated on first use (0: the repository is empty)
    blocked: bool = False
    commits: list[_Commit] | None = None  # newest first; None until first needed

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


@dataclass(slots=True, frozen=True)
class _Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author_name: str
    author_email: str
    author_date: int
    author: _User | None  # the account the author email resolves to
    committer_name: str
    committer_email: str
    committer_date: int
    committer: _User | None
    verified: bool


@dataclass(slots=True)
class _Bucket:
    limit: int
    window: float
    used: int = 0
    reset_at: int = 0  # epoch seconds the window ends; 0 = no window running (nothing spent yet)


@dataclass(slots=True)
class _Result:
    """What a route handler produced, before rate-limit, conditional and common headers are applied."""

    status: int
    body: Any
    link: str | None = None
    last_modified: int | None = None


_WEB_FLOW = _User(
    index=-1,
    login=WEB_FLOW_LOGIN,
    id=WEB_FLOW_ID,
    type="User",
    name="GitHub Web Flow",
    email=None,
    commit_emails=("noreply@github.com",),
    company=None,
    blog="",
    location=None,
    bio=None,
    twitter_username=None,
    hireable=None,
    followers=0,
    following=0,
    public_gists=0,
    created_at=1_465_327_200,
    updated_at=1_465_327_200,
)


# ------------------------------------------------------------------------------------------------ search query


class QueryError(ValueError):
    """A search query GitHub would answer with 422 Validation Failed."""


@dataclass(frozen=True, slots=True)
class _Clause:
    key: str  # a qualifier, or "" for a free-text term
    value: Any  # lower-cased text, or (lo_inclusive, hi_exclusive) epoch bounds for the date qualifiers
    negate: bool = False


def _parse_instant(text: str) -> tuple[int, bool]:
    """Epoch seconds of a date or date-time, and whether it was a bare date (a whole day)."""
    if len(text) == 10:
        d = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return int(d.timestamp()), True
    d = datetime.fromisoformat(text)
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp()), False


def _date_range(spec: str) -> tuple[float, float]:
    """GitHub's date syntax (``>D``, ``>=D``, ``<D``, ``<=D``, ``A..B``, ``A..*``, ``*..B``, ``D``) as bounds."""

    def end_of(text: str) -> int:  # first second after the spec (the next day for a bare date)
        ts, whole_day = _parse_instant(text)
        return ts + (DAY if whole_day else 1)

    try:
        if ".." in spec:
            a, _, b = spec.partition("..")
            lo = -math.inf if a == "*" else _parse_instant(a)[0]
            hi = math.inf if b == "*" else end_of(b)
            return lo, hi
        for op in (">=", "<=", ">", "<"):
            if spec.startswith(op):
                rest = spec[len(op) :]
                if op == ">=":
                    return _parse_instant(rest)[0], math.inf
                if op == ">":
                    return end_of(rest), math.inf
                if op == "<=":
                    return -math.inf, end_of(rest)
                return -math.inf, _parse_instant(rest)[0]
        return _parse_instant(spec)[0], end_of(spec)
    except ValueError as exc:
        raise QueryError(f"invalid date {spec!r}") from exc


def parse_commit_query(q: str) -> list[list[_Clause]]:
    """Parse a ``/search/commits`` ``q`` into OR-groups of AND-ed clauses.

    * ``key:value`` with a key of :data:`COMMIT_QUALIFIERS` is a qualifier (values may be double-quoted);
      ``-key:value`` or ``NOT key:value`` excludes. Within a group, repeated positive qualifiers of one key
      are OR-ed (``repo:a/x repo:b/y``), different keys are AND-ed, as on GitHub.
    * Anything else is a free-text term; every term must occur (case-insensitive substring) in the commit
      message or the author email, so a bare domain such as ``corp.example`` finds its authors' commits.
    * A bare ``OR`` separates groups; the result is their union. ``AND`` is accepted and ignored.
    """
    lex = shlex.shlex(q, posix=True)
    lex.whitespace_split = True
    lex.quotes = '"'  # apostrophes in commit text must not open a quote
    lex.escape = ""
    lex.commenters = ""
    try:
        tokens = list(lex)
    except ValueError as exc:  # an unbalanced quote
        raise QueryError(str(exc)) from exc
    groups: list[list[_Clause]] = [[]]
    negate_next = False
    for tok in tokens:
        if tok == "OR":
            groups.append([])
            continue
        if tok == "AND":
            continue
        if tok == "NOT":
            negate_next = True
            continue
        negate, body = negate_next, tok
        negate_next = False
        if body.startswith("-") and ":" in body and body[1:].partition(":")[0].lower() in COMMIT_QUALIFIERS:
            negate, body = True, body[1:]
        key, colon, value = body.partition(":")
        key = key.lower()
        if colon and key in COMMIT_QUALIFIERS:
            if not value:
                raise QueryError(f"empty value for qualifier {key}")
            parsed: Any = _date_range(value) if key.endswith("-date") else value.lower()
            groups[-1].append(_Clause(key, parsed, negate))
        elif body:
            groups[-1].append(_Clause("", body.lower(), negate))
    groups = [g for g in groups if g]
    if not groups:
        raise QueryError("empty query")
    return groups


# ------------------------------------------------------------------------------------------------ the fake


class FakeGitHub:
    """A deterministic GitHub API; see the module docstring.

    **Data.** ``users`` accounts (:func:`user_login`; every 7th is an organization), each owning exactly
    ``repos_per_user`` repositories of exactly ``commits_per_repo`` commits (newest first) unless empty.
    Generated repositories are empty with probability 0.04 and one of them (when there are at least ten) is
    blocked for legal reasons; :attr:`empty_repos`/:attr:`blocked_repos` list them, fault ones included.
    The same seed gives the same data; the first N accounts and their repositories do
    not depend on ``users`` (commit authors do: collaborators are drawn from every account).

    **Fault names** (class constants, present whatever the size): ``FAULT_OWNER`` a user owning
    ``EMPTY_REPO`` (commits → 409 ``Git Repository is empty.``) and ``BLOCKED_REPO`` (every repository
    route → 451 with a ``block`` object); ``MISSING_USER`` and ``MISSING_REPO`` → 404; ``REVOKED_TOKEN`` is
    always rejected with 401 ``Bad credentials``.

    **Authentication.** ``Authorization: token X``, ``Bearer X`` or ``Basic`` (password = token). With
    ``tokens`` given, only those tokens are valid (each with its own core budget); with ``tokens=None`` any
    token but ``REVOKED_TOKEN`` is valid with ``budget``. Requests without the header share the ``ANONYMOUS`` budget
    (``anonymous_budget``/h core, ``anonymous_search_budget``/min search, like GitHub).

    **Rate limits.** A budget per (token, resource): ``core`` (``window`` seconds) and ``search``
    (``search_window``). A window starts at the first request that spends from it and ends at the integer
    epoch second ``X-RateLimit-Reset`` announces; the first request at or after it finds a full budget.
    Every response carries ``X-RateLimit-Limit/Remaining/Reset/Used/Resource`` (401s those of the
    anonymous budget, unspent). Spending: every answered request (any status, 404/409/422/451 included)
    costs 1, except authenticated 304s, ``/rate_limit``, 401s and the limit responses themselves.
    Exhausted: core → ``core_limit_status`` (403, ``API rate limit exceeded for user ID …``), search →
    ``search_limit_status`` (403 by default: what GitHub answers today, cli/cli#10426; set 429 to test
    that branch), remaining 0; each such request counts in :meth:`requests_after_exhaustion`.
    ``secondary_every=N``: every Nth request that passed the primary check gets ``secondary_status``
    (403) ``You have exceeded a secondary rate limit…`` with ``Retry-After: secondary_retry_after``,
    unspent; requests of that token arriving before the Retry-After elapsed (monotonic time, as a client
    sleeps real seconds) count in :meth:`requests_before_retry_after`.

    **Clock.** ``clock`` (default ``time.time``) plus an offset moved by :meth:`advance`; replace it with
    :meth:`set_clock`. It drives windows, resets and the dates of commits added by :meth:`add_commits`.

    **Counters** (read them while serving; :meth:`reset_counters` clears them): ``requests`` (Counter by route
    kind, see :data:`ROUTE_KINDS`), ``total_requests``, ``not_modified``, ``spent`` (Counter by token of
    requests that cost budget), ``spent_by_resource`` (by ``(token, resource)``), :attr:`log` (last
    ``log_size`` ``(token, route, status, time)``).
    """

    ANONYMOUS = ANONYMOUS
    FAULT_OWNER = FAULT_OWNER
    MISSING_USER = MISSING_USER
    EMPTY_REPO = EMPTY_REPO
    BLOCKED_REPO = BLOCKED_REPO
    MISSING_REPO = MISSING_REPO
    REVOKED_TOKEN = REVOKED_TOKEN
    FAULT_NAMES = FAULT_NAMES

    def __init__(
        self,
        users: int = 20,
        repos_per_user: int = 3,
        commits_per_repo: int = 25,
        seed: int = 1,
        *,
        tokens: Mapping[str, int] | None = None,
        budget: int = 5000,
        window: float = 3600.0,
        search_budget: int = 30,
        search_window: float = 60.0,
        secondary_every: int | None = None,
        clock: Callable[[], float] = time.time,
        anonymous_budget: int = 60,
        anonymous_search_budget: int = 10,
        core_limit_status: int = 403,
        search_limit_status: int = 403,
        secondary_status: int = 403,
        secondary_retry_after: int = 1,
        log_size: int = 10_000,
    ) -> None:
        if min(users, repos_per_user, commits_per_repo) < 0:
            raise ValueError("users, repos_per_user and commits_per_repo must be >= 0")
        if window <= 0 or search_window <= 0:
            raise ValueError("windows must be positive")
        if secondary_every is not None and secondary_every < 1:
            raise ValueError("secondary_every must be >= 1 or None")
        for status in (core_limit_status, search_limit_status, secondary_status):
            if status not in (403, 429):
                raise ValueError("GitHub answers a rate limit with 403 or 429")
        if tokens is not None and (ANONYMOUS in tokens or REVOKED_TOKEN in tokens):
            raise ValueError(f"{ANONYMOUS!r} and {REVOKED_TOKEN!r} are reserved token names")
        self.users = users
        self.repos_per_user = repos_per_user
        self.commits_per_repo = commits_per_repo
        self.seed = seed
        self.tokens: dict[str, int] | None = dict(tokens) if tokens is not None else None
        self.budget = budget
        self.window = window
        self.search_budget = search_budget
        self.search_window = search_window
        self.secondary_every = secondary_every
        self.anonymous_budget = anonymous_budget
        self.anonymous_search_budget = anonymous_search_budget
        self.core_limit_status = core_limit_status
        self.search_limit_status = search_limit_status
        self.secondary_status = secondary_status
        self.secondary_retry_after = secondary_retry_after

        self._clock = clock
        self._offset = 0.0
        self._lock = threading.RLock()

        self.requests: collections.Counter[str] = collections.Counter()
        self.total_requests = 0
        self.not_modified = 0
        self.spent: collections.Counter[str] = collections.Counter()
        self.spent_by_resource: collections.Counter[tuple[str, str]] = collections.Counter()
        self._log: collections.deque[tuple[str, str, int, float]] = collections.deque(maxlen=log_size)
        self._after_exhaustion: collections.Counter[str] = collections.Counter()
        self._before_retry: collections.Counter[str] = collections.Counter()
        self._retry_until: dict[str, float] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._secondary_seq = 0
        self._request_seq = 0

        self.url = "http://127.0.0.1/"
        self._api = self.url.rstrip("/")

        self._users: list[_User] = []
        self._by_login: dict[str, _User] = {}
        self._by_user_id: dict[int, _User] = {}
        self._repos: dict[str, _Repo] = {}  # lower-cased full name -> repo
        self._by_repo_id: dict[int, _Repo] = {}
        self._people: list[_User] = []  # generated accounts that author commits
        self._by_email: dict[str, list[tuple[_Repo, _Commit]]] | None = None  # see _email_index
        self._generate()

    # ------------------------------------------------------------------------------ generation

    def _generate(self) -> None:
        for i in range(self.users):
            self._add_user(self._make_user(i))
        people = self._people = [u for u in self._users if u.type == "User"]
        for u in list(self._users):
            for j in range(self.repos_per_user):
                self._add_repo(self._make_repo(u, j, people))
        fault = self._make_fault_owner()
        self._add_user(fault)
        for j, name in enumerate((EMPTY_REPO, BLOCKED_REPO)):
            repo = self._make_repo(fault, j, people, name=name.partition("/")[2])
            repo.base_commits = 0 if name == EMPTY_REPO else max(self.commits_per_repo, 3)
            if name == EMPTY_REPO:
                repo.pushed_at, repo.size, repo.language = repo.created_at, 0, None
            repo.blocked = name == BLOCKED_REPO
            self._add_repo(repo)
        generated = [r for r in self._by_repo_id.values() if r.owner is not fault]
        if len(generated) >= 10:  # one real-looking repository is blocked too, so a full crawl meets a 451
            rng = random.Random(f"{self.seed}:blocked")
            candidates = [r for r in generated if r.base_commits]
            if candidates:
                rng.choice(candidates).blocked = True

    def _add_user(self, u: _User) -> None:
        self._users.append(u)
        self._by_login[u.login.lower()] = u
        self._by_user_id[u.id] = u

    def _add_repo(self, r: _Repo) -> None:
        r.owner.repos.append(r)
        self._repos[r.full_name.lower()] = r
        self._by_repo_id[r.id] = r

    def _make_user(self, i: int) -> _User:
        rng = random.Random(f"{self.seed}:user:{i}")
        login = user_login(i)
        uid = 20_000 + i * 4099 + rng.randrange(4000)  # unique, growing with i like real account ids
        created = DATA_START + rng.randrange(DATA_END - DATA_START - 400 * DAY)
        updated = created + rng.randrange(DATA_END - created)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        if i % 7 == 5:
            word = rng.choice(_NOUN).capitalize()
            return _User(
                index=i,
                login=login,
                id=uid,
                type="Organization",
                name=f"{word} {rng.choice(('Labs', 'Collective', 'Project', 'Foundation'))}",
                email=f"contact@{login}.example" if rng.random() < 0.5 else None,
                commit_emails=(),
                company=None,
                blog=f"https://{login}.example" if rng.random() < 0.7 else "",
                location=rng.choice(_CITIES) if rng.random() < 0.6 else None,
                bio=f"Home of {word.lower()} tools" if rng.random() < 0.6 else None,
                twitter_username=None,
                hireable=None,
                followers=int(rng.lognormvariate(3, 1.5)),
                following=0,
                public_gists=0,
                created_at=created,
                updated_at=updated,
            )
        r = rng.random()
        if r < 0.35:
            primary = f"{login}@example.com"
        elif r < 0.6:
            primary = f"{first}.{last}@corp.example".lower()
        elif r < 0.8:
            primary = f"{first}@{login}.example".lower()  # their own domain
        else:
            primary = f"{uid}+{login}@users.noreply.github.com"
        emails = [primary]
        if rng.random() < 0.3:  # a second address (work laptop) some commits carry
            second = f"{first[0]}{last}.{i}@corp.example".lower()
            emails.append(second)
        public = None if primary.endswith("noreply.github.com") or rng.random() < 0.3 else primary
        return _User(
            index=i,
            login=login,
            id=uid,
            type="User",
            name=f"{first} {last}" if rng.random() < 0.85 else None,
            email=public,
            commit_emails=tuple(emails),
            company=rng.choice(_COMPANIES) if rng.random() < 0.4 else None,
            blog=f"https://{login}.example/blog" if rng.random() < 0.4 else "",
            location=rng.choice(_CITIES) if rng.random() < 0.6 else None,
            bio=f"{rng.choice(_ADJ).capitalize()} {rng.choice(_NOUN)} enthusiast" if rng.random() < 0.5 else None,
            twitter_username=f"{first.lower()}{i}" if rng.random() < 0.2 else None,
            hireable=True if rng.random() < 0.2 else None,
            followers=int(rng.lognormvariate(2.5, 1.6)),
            following=int(rng.lognormvariate(2, 1.2)),
            public_gists=rng.randrange(20),
            created_at=created,
            updated_at=updated,
        )

    def _make_fault_owner(self) -> _User:
        created = DATA_START + 1000 * DAY
        return _User(
            index=-1,
            login=FAULT_OWNER,
            id=9_900_001,
            type="User",
            name="Fault Owner",
            email=f"{FAULT_OWNER}@example.com",
            commit_emails=(f"{FAULT_OWNER}@example.com",),
            company=None,
            blog="",
            location=None,
            bio="Owns the repositories that fail on purpose",
            twitter_username=None,
            hireable=None,
            followers=1,
            following=0,
            public_gists=0,
            created_at=created,
            updated_at=created + DAY,
        )

    def _make_repo(self, owner: _User, j: int, people: Sequence[_User], name: str | None = None) -> _Repo:
        rng = random.Random(f"{self.seed}:repo:{owner.login}:{j}")
        if name is None:
            name = f"{rng.choice(_ADJ)}-{rng.choice(_NOUN)}-{j}"
        rid = 50_000_000 + max(owner.index, 0) * 1000 + j * 10 + (999_000 if owner.index < 0 else 0)
        start = max(owner.created_at, DATA_START)
        created = start + rng.randrange(max(DAY, DATA_END - start - 60 * DAY))
        empty = rng.random() < 0.04
        pushed = created if empty else created + DAY + rng.randrange(max(DAY, DATA_END - created - DAY))
        updated = min(DATA_END, pushed + rng.randrange(30 * DAY))
        language = None if empty else rng.choice(_LANGS)
        stars = int(rng.lognormvariate(1.5, 2.0))
        lic = rng.choice(_LICENSES)
        return _Repo(
            id=rid,
            name=name,
            owner=owner,
            description=f"A {rng.choice(_ADJ)} {rng.choice(_NOUN)}" if rng.random() < 0.8 else None,
            homepage=f"https://{name}.example.org" if rng.random() < 0.2 else None,
            language=language,
            topics=sorted(rng.sample(_TOPICS, rng.choice((0, 0, 1, 2, 3, 4)))),
            license=lic,
            stars=stars,
            forks=int(stars * rng.uniform(0, 0.3)),
            subscribers=1 + int(stars * rng.uniform(0, 0.05)),
            open_issues=rng.randrange(12),
            size=0 if empty else rng.randrange(10, 50_000),
            archived=rng.random() < 0.05,
            fork=rng.random() < 0.1,
            default_branch="main" if rng.random() < 0.7 else "master",
            created_at=created,
            updated_at=updated,
            pushed_at=pushed,
            base_commits=0 if empty else self.commits_per_repo,
        )

    def _commits_of(self, repo: _Repo) -> list[_Commit]:
        """The repository's commits, newest first (built on first use: large fakes stay cheap to start)."""
        if repo.commits is not None:
            return repo.commits
        rng = random.Random(f"{self.seed}:commits:{repo.full_name}")
        n = repo.base_commits
        span = max(n, repo.pushed_at - repo.created_at)
        dates = sorted(repo.created_at + rng.randrange(span) for _ in range(max(n - 1, 0)))
        dates.append(repo.pushed_at)
        for k in range(1, len(dates)):  # strictly increasing: a "since" boundary is then unambiguous
            dates[k] = max(dates[k], dates[k - 1] + 1)
        owner = repo.owner
        people = self._people
        pool = rng.sample(people, min(3, len(people)))  # collaborators besides the owner
        if owner.type == "User":
            pool = [owner] * 6 + pool
        commits: list[_Commit] = []
        parent: str | None = None
        for k in range(n):
            c = self._make_commit(rng, repo, k, pool, dates[k], parent)
            commits.append(c)
            parent = c.sha
        repo.commits = commits[::-1]
        return repo.commits

    def _make_commit(
        self, rng: random.Random, repo: _Repo, k: int, pool: Sequence[_User], date: int, parent: str | None
    ) -> _Commit:
        author: _User | None
        if pool and rng.random() < 0.88:
            author = rng.choice(pool)
            emails = author.commit_emails
            email = emails[1] if len(emails) > 1 and rng.random() < 0.3 else emails[0]
            name = author.name or author.login
        else:  # someone without a GitHub account: the API then gives "author": null
            author = None
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            name = f"{first} {last}"
            email = f"{first}.{last}@{rng.choice(_EXTERNAL_DOMAINS)}".lower()
        merge = parent is not None and rng.random() < 0.08
        if merge:
            head = author.login if author else "contributor"
            title = f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
            message = f"Merge pull request #{k + 1} from {head}/patch-{k}\n\n{title}"
        else:
            message = f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
            if rng.random() < 0.2:
                message += f"\n\nSigned-off-by: {name} <{email}>"
        author_date = date - (rng.randrange(3 * DAY) if rng.random() < 0.2 else 0)  # rebased: authored earlier
        sha = _sha1(f"{self.seed}:{repo.full_name}:{k}:{message}")
        parents: tuple[str, ...] = () if parent is None else (parent,)
        if merge:
            parents += (_sha1(f"side:{sha}"),)
        web_flow = merge or rng.random() < 0.15
        return _Commit(
            sha=sha,
            tree=_sha1(f"tree:{sha}"),
            parents=parents,
            message=message,
            author_name=name,
            author_email=email,
            author_date=author_date,
            author=author,
            committer_name="GitHub" if web_flow else name,
            committer_email="noreply@github.com" if web_flow else email,
            committer_date=date,
            committer=_WEB_FLOW if web_flow else author,
            verified=web_flow or rng.random() < 0.15,
        )

    # ------------------------------------------------------------------------------ accessors

    def logins(self) -> list[str]:
        """Generated logins (organizations included, fault owner excluded), in index order."""
        return [u.login for u in self._users if u.index >= 0]

    def repo_names(self, login: str | None = None) -> list[str]:
        """Full names of every repository (or of ``login``'s), fault ones included when no login is given."""
        with self._lock:
            if login is None:
                return [r.full_name for r in self._by_repo_id.values()]
            u = self._by_login.get(login.lower())
            return [] if u is None else [r.full_name for r in u.repos]

    @property
    def empty_repos(self) -> list[str]:
        with self._lock:
            return [r.full_name for r in self._by_repo_id.values() if not self._commit_count(r)]

    @property
    def blocked_repos(self) -> list[str]:
        return [r.full_name for r in self._by_repo_id.values() if r.blocked]

    def author_emails(self) -> list[str]:
        """Every distinct commit author email (sorted), blocked repositories excluded."""
        with self._lock:
            return sorted({c.author_email for r in self._searchable() for c in self._commits_of(r)})

    def user(self, login: str) -> dict[str, Any] | None:
        """The body ``GET /users/{login}`` returns (URLs use the served base), or None."""
        with self._lock:
            u = self._by_login.get(login.lower())
            return None if u is None else self._user_json(u)

    def repo(self, full_name: str) -> dict[str, Any] | None:
        with self._lock:
            r = self._repos.get(full_name.lower())
            return None if r is None else self._repo_json(r)

    def commits(self, full_name: str) -> list[dict[str, Any]]:
        """Every commit of the repository as list items, newest first."""
        with self._lock:
            r = self._repos[full_name.lower()]
            return [self._commit_json(r, c) for c in self._commits_of(r)]

    def commit(self, full_name: str, sha: str) -> dict[str, Any] | None:
        with self._lock:
            r = self._repos[full_name.lower()]
            c = self._find_commit(r, sha)
            return None if c is None else self._commit_json(r, c, detail=True)

    def search(self, q: str, sort: str | None = None, order: str = "desc") -> list[dict[str, Any]]:
        """All items ``/search/commits`` matches (no 1000 cap, no paging); raises :class:`QueryError`."""
        with self._lock:
            return [self._search_item(r, c) for r, c in self._search(q, sort, order)]

    # ------------------------------------------------------------------------------ clock and budgets

    def now(self) -> float:
        return self._clock() + self._offset

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use ``clock`` from now on (the :meth:`advance` offset is kept)."""
        with self._lock:
            self._clock = clock

    def advance(self, seconds: float) -> None:
        """Move the fake's time forward (works on top of any clock)."""
        with self._lock:
            self._offset += seconds

    def _limit(self, key: str, resource: str) -> tuple[int, float]:
        if resource == "search":
            n = self.anonymous_search_budget if key == ANONYMOUS else self.search_budget
            return n, self.search_window
        if key == ANONYMOUS:
            return self.anonymous_budget, self.window
        if self.tokens is not None and key in self.tokens:
            return self.tokens[key], self.window
        return self.budget, self.window

    def _bucket(self, key: str, resource: str, now: float) -> _Bucket:
        b = self._buckets.get((key, resource))
        if b is None:
            limit, window = self._limit(key, resource)
            b = self._buckets[(key, resource)] = _Bucket(limit, window)
        if b.reset_at and now >= b.reset_at:  # the window ended: a full budget, no window until spent
            b.used, b.reset_at = 0, 0
        return b

    def _reset_header(self, b: _Bucket, now: float) -> int:
        # An integer epoch second: a client that waits until it sees it is never early.
        return b.reset_at or math.ceil(now + b.window)

    def remaining(self, token: str | None = None, resource: str = "core") -> int:
        with self._lock:
            b = self._bucket(token or ANONYMOUS, resource, self.now())
            return max(b.limit - b.used, 0)

    def reset_time(self, token: str | None = None, resource: str = "core") -> int:
        """The ``X-RateLimit-Reset`` a request would see now."""
        with self._lock:
            now = self.now()
            return self._reset_header(self._bucket(token or ANONYMOUS, resource, now), now)

    def requests_after_exhaustion(self, token: str | None = None) -> int:
        """Requests (any resource) that arrived for ``token`` while that resource had no budget left."""
        with self._lock:
            return self._after_exhaustion[token or ANONYMOUS]

    def requests_before_retry_after(self, token: str | None = None) -> int:
        """Requests for ``token`` that arrived before a secondary limit's Retry-After had elapsed."""
        with self._lock:
            return self._before_retry[token or ANONYMOUS]

    @property
    def log(self) -> list[tuple[str, str, int, float]]:
        """The last requests as ``(token, route kind, status, fake time)``, oldest first."""
        with self._lock:
            return list(self._log)

    def reset_counters(self) -> None:
        """Clear the request counters and log (budgets are kept: see :meth:`reset_budgets`)."""
        with self._lock:
            self.requests.clear()
            self.total_requests = 0
            self.not_modified = 0
            self.spent.clear()
            self.spent_by_resource.clear()
            self._log.clear()
            self._after_exhaustion.clear()
            self._before_retry.clear()

    def reset_budgets(self) -> None:
        """Give every token full budgets and forget pending Retry-After windows."""
        with self._lock:
            self._buckets.clear()
            self._retry_until.clear()
            self._secondary_seq = 0

    # ------------------------------------------------------------------------------ mutations

    def add_commits(self, owner_repo: str, n: int = 1) -> list[str]:
        """Push ``n`` commits on top of the default branch (dated from the fake clock, after the current
        head); the repository's and its commit list's ETags change. Returns the new shas, newest first."""
        with self._lock:
            repo = self._repos[owner_repo.lower()]
            commits = self._commits_of(repo)
            rng = random.Random(f"{self.seed}:push:{repo.full_name}:{len(commits)}")
            head = commits[0] if commits else None
            start = max(int(self.now()), head.committer_date + 1 if head else repo.created_at + 1)
            pool = [repo.owner] if repo.owner.type == "User" else self._people[:3]
            new: list[_Commit] = []
            parent = head.sha if head else None
            for k in range(n):
                c = self._make_commit(rng, repo, len(commits) + k, pool, start + k, parent)
                new.append(c)
                parent = c.sha
            repo.commits = new[::-1] + commits
            if self._by_email is not None and not repo.blocked:
                for c in new:
                    self._by_email.setdefault(c.author_email.lower(), []).append((repo, c))
            repo.pushed_at = repo.updated_at = start + n - 1
            repo.size += 3 * n
            if repo.language is None:
                repo.language = "Python"
            return [c.sha for c in repo.commits[:n]]

    def touch_user(self, login: str) -> None:
        """Change ``login``'s profile (followers, ``updated_at``): its body and ETag change."""
        with self._lock:
            u = self._by_login[login.lower()]
            u.touches += 1
            u.followers += 1
            u.updated_at = max(u.updated_at + 1, int(self.now()))

    # ------------------------------------------------------------------------------ JSON shapes

    def _simple_user(self, u: _User) -> dict[str, Any]:
        api = f"{self._api}/users/{u.login}"
        kind = "12:Organization" if u.type == "Organization" else "04:User"
        prefix, _, name = kind.partition(":")
        return {
            "login": u.login,
            "id": u.id,
            "node_id": _node_id(prefix, name, u.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{u.id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"https://github.com/{u.login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": u.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _user_json(self, u: _User) -> dict[str, Any]:
        d = self._simple_user(u)
        d.update(
            name=u.name,
            company=u.company,
            blog=u.blog,
            location=u.location,
            email=u.email,
            hireable=u.hireable,
            bio=u.bio,
            twitter_username=u.twitter_username,
            public_repos=len(u.repos),
            public_gists=u.public_gists,
            followers=u.followers,
            following=u.following,
            created_at=_iso(u.created_at),
            updated_at=_iso(u.updated_at),
        )
        return d

    def _repo_urls(self, r: _Repo) -> dict[str, Any]:
        api = f"{self._api}/repos/{r.full_name}"
        return {
            "id": r.id,
            "node_id": _node_id("010", "Repository", r.id),
            "name": r.name,
            "full_name": r.full_name,
            "private": False,
            "owner": self._simple_user(r.owner),
            "html_url": f"https://github.com/{r.full_name}",
            "description": r.description,
            "fork": r.fork,
            "url": api,
            "forks_url": f"{api}/forks",
            "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events",
            "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers",
            "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges",
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}",
            "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
        }

    def _repo_json(self, r: _Repo, full: bool = True) -> dict[str, Any]:
        d = self._repo_urls(r)
        lic = None
        if r.license is not None:
            key, name, spdx, node = r.license
            lic = {
                "key": key,
                "name": name,
                "spdx_id": spdx,
                "url": None if key == "other" else f"{self._api}/licenses/{key}",
                "node_id": node,
            }
        d.update(
            {
                "created_at": _iso(r.created_at),
                "updated_at": _iso(r.updated_at),
                "pushed_at": _iso(r.pushed_at),
                "git_url": f"git://github.com/{r.full_name}.git",
                "ssh_url": f"git@github.com:{r.full_name}.git",
                "clone_url": f"https://github.com/{r.full_name}.git",
                "svn_url": f"https://github.com/{r.full_name}",
                "homepage": r.homepage,
                "size": r.size,
                "stargazers_count": r.stars,
                "watchers_count": r.stars,  # GitHub's legacy alias of stars, not the watchers
                "language": r.language,
                "has_issues": True,
                "has_projects": True,
                "has_downloads": True,
                "has_wiki": True,
                "has_pages": False,
                "has_discussions": False,
                "forks_count": r.forks,
                "mirror_url": None,
                "archived": r.archived,
                "disabled": False,
                "open_issues_count": r.open_issues,
                "license": lic,
                "allow_forking": True,
                "is_template": False,
                "web_commit_signoff_required": False,
                "topics": list(r.topics),
                "visibility": "public",
                "forks": r.forks,
                "open_issues": r.open_issues,
                "watchers": r.stars,
                "default_branch": r.default_branch,
            }
        )
        if full:  # only the single-repository endpoint carries these
            if r.owner.type == "Organization":
                d["organization"] = self._simple_user(r.owner)
            d["network_count"] = r.forks
            d["subscribers_count"] = r.subscribers
        return d

    def _commit_json(self, r: _Repo, c: _Commit, detail: bool = False) -> dict[str, Any]:
        api = f"{self._api}/repos/{r.full_name}"
        d: dict[str, Any] = {
            "sha": c.sha,
            "node_id": _node_id("06", "Commit", f"{r.id}:{c.sha}"),
            "commit": {
                "author": {"name": c.author_name, "email": c.author_email, "date": _iso(c.author_date)},
                "committer": {"name": c.committer_name, "email": c.committer_email, "date": _iso(c.committer_date)},
                "message": c.message,
                "tree": {"sha": c.tree, "url": f"{api}/git/trees/{c.tree}"},
                "url": f"{api}/git/commits/{c.sha}",
                "comment_count": 0,
                "verification": {
                    "verified": c.verified,
                    "reason": "valid" if c.verified else "unsigned",
                    "signature": "-----BEGIN PGP SIGNATURE-----\n...\n-----END PGP SIGNATURE-----\n"
                    if c.verified
                    else None,
                    "payload": f"tree {c.tree}\n" if c.verified else None,
                    "verified_at": _iso(c.committer_date) if c.verified else None,
                },
            },
            "url": f"{api}/commits/{c.sha}",
            "html_url": f"https://github.com/{r.full_name}/commit/{c.sha}",
            "comments_url": f"{api}/commits/{c.sha}/comments",
            "author": None if c.author is None else self._simple_user(c.author),
            "committer": None if c.committer is None else self._simple_user(c.committer),
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"https://github.com/{r.full_name}/commit/{p}"}
                for p in c.parents
            ],
        }
        if detail:
            d["stats"], d["files"] = self._diff(r, c)
        return d

    def _diff(self, r: _Repo, c: _Commit) -> tuple[dict[str, int], list[dict[str, Any]]]:
        rng = random.Random(c.sha)  # derived from the sha: nothing stored per commit
        ext = _EXT.get(r.language or "", "md")
        files: list[dict[str, Any]] = []
        adds = dels = 0
        for k in range(rng.choice((1, 1, 2, 3, 5))):
            path = f"{rng.choice(('src', 'lib', 'tests', 'docs'))}/{rng.choice(_NOUN)}_{k}.{ext}"
            status = rng.choice(("modified", "modified", "modified", "added", "removed"))
            a = 0 if status == "removed" else rng.randrange(1, 120)
            de = 0 if status == "added" else rng.randrange(0, 60)
            adds, dels = adds + a, dels + de
            blob = _sha1(f"blob:{c.sha}:{path}")
            files.append(
                {
                    "sha": blob,
                    "filename": path,
                    "status": status,
                    "additions": a,
                    "deletions": de,
                    "changes": a + de,
                    "blob_url": f"https://github.com/{r.full_name}/blob/{c.sha}/{path}",
                    "raw_url": f"https://github.com/{r.full_name}/raw/{c.sha}/{path}",
                    "contents_url": f"{self._api}/repos/{r.full_name}/contents/{path}?ref={c.sha}",
                    "patch": f"@@ -1,{de} +1,{a} @@\n-old line\n+new line",
                }
            )
        return {"total": adds + dels, "additions": adds, "deletions": dels}, files

    def _search_item(self, r: _Repo, c: _Commit) -> dict[str, Any]:
        d = self._commit_json(r, c)
        d["repository"] = self._repo_urls(r)
        d["score"] = 1.0
        return d

    # ------------------------------------------------------------------------------ queries

    def _commit_count(self, r: _Repo) -> int:
        return r.base_commits if r.commits is None else len(r.commits)

    def _searchable(self) -> list[_Repo]:
        return [r for r in self._by_repo_id.values() if not r.blocked]

    def _email_index(self) -> dict[str, list[tuple[_Repo, _Commit]]]:
        """Lower-cased author email -> its commits in searchable repositories (built on first use)."""
        if self._by_email is None:
            index: dict[str, list[tuple[_Repo, _Commit]]] = {}
            for r in self._searchable():
                for c in self._commits_of(r):
                    index.setdefault(c.author_email.lower(), []).append((r, c))
            self._by_email = index
        return self._by_email

    def _find_commit(self, r: _Repo, ref: str) -> _Commit | None:
        commits = self._commits_of(r)
        if not commits:
            return None
        if ref in (r.default_branch, "HEAD"):
            return commits[0]
        ref = ref.lower()
        if len(ref) < 4:
            return None
        return next((c for c in commits if c.sha.startswith(ref)), None)

    def _search(self, q: str, sort: str | None, order: str) -> list[tuple[_Repo, _Commit]]:
        groups = parse_commit_query(q)
        for group in groups:
            for cl in group:
                if cl.key in ("user", "org") and cl.value not in self._by_login:
                    raise QueryError("unknown user")
                if cl.key == "repo" and cl.value not in self._repos:
                    raise QueryError("unknown repository")
        seen: set[tuple[int, str]] = set()
        out: list[tuple[_Repo, _Commit]] = []
        for group in groups:
            emails = [cl.value for cl in group if cl.key == "author-email" and not cl.negate]
            candidates: Iterator[tuple[_Repo, _Commit]]
            if emails:  # the platform's common query: an index saves scanning every commit each time
                index = self._email_index()
                candidates = (rc for e in emails for rc in index.get(e, ()))
            else:
                candidates = ((r, c) for r in self._searchable() for c in self._commits_of(r))
            for r, c in candidates:
                if (r.id, c.sha) not in seen and _repo_matches(group, r) and _commit_matches(group, c):
                    seen.add((r.id, c.sha))
                    out.append((r, c))
        # "Best match" has no meaning here: it sorts like sort=committer-date (newest first).
        by_author = sort == "author-date"
        out.sort(key=lambda rc: (rc[0].id, rc[1].sha))  # a stable tie-break for equal dates
        out.sort(key=lambda rc: rc[1].author_date if by_author else rc[1].committer_date, reverse=order != "asc")
        return out

    # ------------------------------------------------------------------------------ HTTP

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    def _bind(self, handle: ServerHandle) -> dict[str, Any]:
        self.url = handle.base_url
        self._api = self.url.rstrip("/")
        return {"url": self.url}

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeGitHub]:
        """Serve from a background thread; yields ``self`` with ``url`` (the API base, ending in ``/``)."""
        with run_in_thread(self.make_app(), host, port, name="fake-github") as handle:
            self._bind(handle)
            yield self

    def _route(self, path: str) -> tuple[str, Callable[..., _Result], tuple[str, ...]]:
        parts = [p for p in path.split("/") if p]
        n = len(parts)
        head = parts[0] if parts else ""
        if head == "users" and n == 2:
            return "user", self._h_user, (parts[1],)
        if head == "user" and n == 2 and parts[1].isdigit():
            return "user", self._h_user_by_id, (parts[1],)
        if head in ("users", "user") and n == 3 and parts[2] == "repos":
            if head == "user" and not parts[1].isdigit():
                return "other", self._h_not_found, ()
            return "user_repos", self._h_user_repos, (head, parts[1])
        if head == "repos" and n >= 3:
            kind, rest = self._repo_route(parts[3:])
            return kind, self._h_repo_route, ("name", f"{parts[1]}/{parts[2]}", *rest)
        if head == "repositories" and n >= 2 and parts[1].isdigit():
            kind, rest = self._repo_route(parts[2:])
            return kind, self._h_repo_route, ("id", parts[1], *rest)
        if parts == ["search", "commits"]:
            return "search", self._h_search, ()
        if parts == ["rate_limit"]:
            return "rate_limit", self._h_not_found, ()  # answered before any handler
        return "other", self._h_not_found, ()

    @staticmethod
    def _repo_route(rest: list[str]) -> tuple[str, tuple[str, ...]]:
        if not rest:
            return "repo", ("repo",)
        if rest == ["commits"]:
            return "commits", ("commits",)
        if len(rest) == 2 and rest[0] == "commits":
            return "commit", ("commit", rest[1])
        return "other", ("other",)

    async def _handle(self, request: web.Request) -> web.Response:
        kind, handler, args = self._route(request.path)
        # Handlers never await: holding the lock for the whole request keeps test-thread mutations atomic.
        with self._lock:
            return self._process(request, kind, handler, args)

    def _auth(self, header: str | None) -> tuple[str, bool]:
        """(budget key, valid) for an Authorization header."""
        if not header:
            return ANONYMOUS, True
        scheme, _, cred = header.strip().partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        token = ""
        if scheme in ("token", "bearer"):
            token = cred
        elif scheme == "basic":
            try:
                user, _, password = base64.b64decode(cred, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return cred or "?", False
            token = password or user
        if not token or token in (REVOKED_TOKEN, ANONYMOUS):
            return token or "?", False
        if self.tokens is not None and token not in self.tokens:
            return token, False
        return token, True

    def _request_id(self) -> str:
        self._request_seq += 1
        h = hashlib.blake2b(f"{self.seed}:{self._request_seq}".encode(), digest_size=16).digest()
        a, b, c, d = (int.from_bytes(h[k : k + 4], "big") for k in range(0, 16, 4))
        return f"{a & 0xFFFF:04X}:{b & 0xFFFFF:X}:{c:X}:{d:X}:{0x60000000 + self._request_seq:X}"

    def _process(
        self, request: web.Request, kind: str, handler: Callable[..., _Result], args: tuple[str, ...]
    ) -> web.Response:
        now = self.now()
        rid = self._request_id()
        self.requests[kind] += 1
        self.total_requests += 1
        key, valid = self._auth(request.headers.get("Authorization"))
        authenticated = key != ANONYMOUS

        def finish(status: int, body: bytes | None, headers: dict[str, str]) -> web.Response:
            self._log.append((key, kind, status, now))
            return web.Response(status=status, body=body, headers=headers)

        if not valid:
            b = self._bucket(ANONYMOUS, "core", now)
            h = self._headers(rid, False, b, "core", now)
            return finish(401, _error("Bad credentials", DOCS, 401), h)
        resource = "search" if kind == "search" else "core"
        if kind == "rate_limit":
            b = self._bucket(key, "core", now)
            h = self._headers(rid, authenticated, b, "core", now)
            h["Cache-Control"] = "no-cache"
            return finish(200, orjson.dumps(self._rate_limit_body(key, now)), h)

        b = self._bucket(key, resource, now)
        if b.used >= b.limit:
            self._after_exhaustion[key] += 1
            status = self.search_limit_status if resource == "search" else self.core_limit_status
            who = f"user ID {_token_user_id(key)}" if authenticated else f"{request.remote or '127.0.0.1'}"
            extra = (
                ""
                if authenticated
                else " (But here's the good news: Authenticated requests get a higher rate limit."
                " Check out the documentation for more details.)"
            )
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
            msg = (
                f"API rate limit exceeded for {who}.{extra} If you reach out to GitHub Support for help, please "
                f"include the request ID {rid} and timestamp {stamp} UTC."
            )
            body = orjson.dumps({"message": msg, "documentation_url": RATE_DOCS})
            return finish(status, body, self._headers(rid, authenticated, b, resource, now))

        if time.monotonic() < self._retry_until.get(key, -math.inf):
            self._before_retry[key] += 1
        if self.secondary_every:
            self._secondary_seq += 1
            if self._secondary_seq % self.secondary_every == 0:
                self._retry_until[key] = time.monotonic() + self.secondary_retry_after
                h = self._headers(rid, authenticated, b, resource, now)
                h["Retry-After"] = str(self.secondary_retry_after)
                msg = (
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                    f"If you reach out to GitHub Support for help, please include the request ID {rid}."
                )
                body = orjson.dumps({"message": msg, "documentation_url": SECONDARY_DOCS})
                return finish(self.secondary_status, body, h)

        result = handler(request, *args)
        status, payload = result.status, None
        extra_headers: dict[str, str] = {}
        if result.status == 200:
            payload = orjson.dumps(result.body)
            digest = hashlib.sha256(payload + (result.link or "").encode()).hexdigest()
            etag = f'W/"{digest}"'
            extra_headers["ETag"] = etag
            if result.last_modified is not None:
                extra_headers["Last-Modified"] = _http_date(result.last_modified)
            if result.link:
                extra_headers["Link"] = result.link
            if _not_modified(request, etag, result.last_modified):
                status, payload = 304, None
                self.not_modified += 1
        elif result.body is not None:
            payload = orjson.dumps(result.body)
        # GitHub does not charge a 304 to a correctly authorized request; anonymous ones still pay.
        if not (status == 304 and authenticated):
            if not b.reset_at:
                b.reset_at = math.ceil(now + b.window)
            b.used += 1
            self.spent[key] += 1
            self.spent_by_resource[(key, resource)] += 1
        h = self._headers(rid, authenticated, b, resource, now)
        h.update(extra_headers)
        if status == 200:
            h["Cache-Control"] = f"{'private' if authenticated else 'public'}, max-age=60, s-maxage=60"
        if status == 304:
            h.pop("Content-Type", None)
        return finish(status, payload, h)

    def _headers(self, rid: str, authenticated: bool, b: _Bucket, resource: str, now: float) -> dict[str, str]:
        h = {
            "Content-Type": JSON_CONTENT_TYPE,
            "Server": "github.com",
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding, Accept, X-Requested-With",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": API_VERSION,
            "X-RateLimit-Limit": str(b.limit),
            "X-RateLimit-Remaining": str(max(b.limit - b.used, 0)),
            "X-RateLimit-Reset": str(self._reset_header(b, now)),
            "X-RateLimit-Used": str(min(b.used, b.limit)),
            "X-RateLimit-Resource": resource,
            "Access-Control-Expose-Headers": _EXPOSE,
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
            "X-GitHub-Request-Id": rid,
        }
        if authenticated:
            h["X-OAuth-Scopes"] = "public_repo, read:user"
            h["X-Accepted-OAuth-Scopes"] = ""
        return h

    def _rate_limit_body(self, key: str, now: float) -> dict[str, Any]:
        def entry(resource: str) -> dict[str, int]:
            b = self._bucket(key, resource, now)
            return {
                "limit": b.limit,
                "used": min(b.used, b.limit),
                "remaining": max(b.limit - b.used, 0),
                "reset": self._reset_header(b, now),
            }

        hour, minute = math.ceil(now + 3600), math.ceil(now + 60)
        anonymous = key == ANONYMOUS

        def static(limit: int, reset: int) -> dict[str, int]:
            return {"limit": limit, "used": 0, "remaining": limit, "reset": reset}

        core = entry("core")
        resources = {
            "core": core,
            "search": entry("search"),
            "graphql": static(0 if anonymous else 5000, hour),
            "integration_manifest": static(5000, hour),
            "source_import": static(100, minute),
            "code_scanning_upload": static(0 if anonymous else 1000, hour),
            "code_scanning_autofix": static(10, minute),
            "actions_runner_registration": static(10000, hour),
            "scim": static(15000, hour),
            "dependency_snapshots": static(100, minute),
            "dependency_sbom": static(100, hour),
            "audit_log": static(1750, hour),
            "audit_log_streaming": static(15, minute),
            "code_search": static(10, minute),
        }
        return {"resources": resources, "rate": dict(core)}

    # ------------------------------------------------------------------------------ route handlers

    def _h_not_found(self, request: web.Request, *args: str) -> _Result:
        return _Result(404, _error_obj("Not Found", DOCS, 404))

    def _h_user(self, request: web.Request, login: str) -> _Result:
        u = self._by_login.get(login.lower())
        if u is None:
            return _Result(404, _error_obj("Not Found", f"{DOCS}/users/users#get-a-user", 404))
        return _Result(200, self._user_json(u), last_modified=u.updated_at)

    def _h_user_by_id(self, request: web.Request, uid: str) -> _Result:
        u = self._by_user_id.get(int(uid))
        if u is None:
            return _Result(404, _error_obj("Not Found", f"{DOCS}/users/users#get-a-user-using-their-id", 404))
        return self._h_user(request, u.login)

    def _h_user_repos(self, request: web.Request, form: str, ident: str) -> _Result:
        u = self._by_user_id.get(int(ident)) if form == "user" else self._by_login.get(ident.lower())
        if u is None:
            return _Result(404, _error_obj("Not Found", f"{DOCS}/repos/repos#list-repositories-for-a-user", 404))
        q = request.query
        sort = q.get("sort", "full_name")
        direction = q.get("direction", "asc" if sort == "full_name" else "desc")
        keys: dict[str, Callable[[_Repo], Any]] = {
            "created": lambda r: r.created_at,
            "updated": lambda r: r.updated_at,
            "pushed": lambda r: r.pushed_at,
            "full_name": lambda r: r.full_name.lower(),
        }
        if sort not in keys:
            return _Result(422, _validation_failed("sort", "invalid"))
        repos = sorted(u.repos, key=keys[sort], reverse=direction == "desc")
        per_page, page = _page_params(q)
        items = repos[(page - 1) * per_page : page * per_page]
        link = self._link(f"/user/{u.id}/repos", q, page, math.ceil(len(repos) / per_page))
        lm = max((r.updated_at for r in u.repos), default=u.updated_at)
        return _Result(200, [self._repo_json(r, full=False) for r in items], link, lm)

    def _h_repo_route(self, request: web.Request, form: str, ident: str, what: str, *rest: str) -> _Result:
        r = self._by_repo_id.get(int(ident)) if form == "id" else self._repos.get(ident.lower())
        if what == "other":
            return _Result(404, _error_obj("Not Found", DOCS, 404))
        if r is None:
            return _Result(404, _error_obj("Not Found", f"{DOCS}/repos/repos#get-a-repository", 404))
        if r.blocked:
            block = {
                "reason": "dmca",
                "created_at": "2023-05-23T14:01:33Z",
                "html_url": f"https://github.com/github/dmca/blob/master/2023/05/2023-05-23-{r.name}.md",
            }
            return _Result(451, {"message": "Repository access blocked", "block": block})
        if what == "repo":
            return _Result(200, self._repo_json(r), last_modified=r.updated_at)
        commits = self._commits_of(r)
        if not commits:
            return _Result(409, _error_obj("Git Repository is empty.", f"{DOCS}/commits/commits#list-commits", 409))
        if what == "commit":
            c = self._find_commit(r, rest[0])
            if c is None:
                return _Result(
                    422,
                    _error_obj(f"No commit found for SHA: {rest[0]}", f"{DOCS}/commits/commits#get-a-commit", 422),
                )
            return _Result(200, self._commit_json(r, c, detail=True), last_modified=c.committer_date)
        return self._list_commits(request, r, commits)

    def _list_commits(self, request: web.Request, r: _Repo, commits: list[_Commit]) -> _Result:
        q = request.query
        docs = f"{DOCS}/commits/commits#list-commits"
        if "sha" in q:
            start = self._find_commit(r, q["sha"])
            if start is None:
                return _Result(404, _error_obj(f"No commit found for SHA: {q['sha']}", docs, 404))
            commits = commits[commits.index(start) :]
        # GitHub filters on the committer date; both bounds are inclusive.
        limits: dict[str, int | None] = {"since": None, "until": None}
        for name in limits:
            if name in q:
                try:
                    limits[name] = _parse_instant(q[name])[0]
                except ValueError:
                    return _Result(422, _validation_failed(name, "invalid"))
        since, until = limits["since"], limits["until"]
        who = q.get("author", "").lower()
        selected = [
            c
            for c in commits
            if (since is None or c.committer_date >= since)
            and (until is None or c.committer_date <= until)
            and (not who or c.author_email.lower() == who or (c.author is not None and c.author.login.lower() == who))
        ]
        per_page, page = _page_params(q)
        items = selected[(page - 1) * per_page : page * per_page]
        link = self._link(f"/repositories/{r.id}/commits", q, page, math.ceil(len(selected) / per_page))
        lm = selected[0].committer_date if selected else commits[0].committer_date
        return _Result(200, [self._commit_json(r, c) for c in items], link, lm)

    def _h_search(self, request: web.Request) -> _Result:
        q = request.query
        text = q.get("q", "").strip()
        if not text:
            return _Result(422, _validation_failed("q", "missing"))
        sort = q.get("sort")
        order = q.get("order", "desc")
        if sort not in (None, "author-date", "committer-date") or order not in ("asc", "desc"):
            return _Result(422, _validation_failed("sort", "invalid"))
        try:
            found = self._search(text, sort, order)
        except QueryError as exc:
            return _Result(422, _search_invalid(str(exc)))
        per_page, page = _page_params(q)
        if (page - 1) * per_page >= SEARCH_RESULT_CAP and found:
            return _Result(422, _error_obj("Only the first 1000 search results are available", SEARCH_DOCS, 422))
        reachable = found[:SEARCH_RESULT_CAP]
        items = reachable[(page - 1) * per_page : page * per_page]
        link = self._link("/search/commits", q, page, math.ceil(len(reachable) / per_page))
        body = {
            "total_count": len(found),
            "incomplete_results": False,
            "items": [self._search_item(r, c) for r, c in items],
        }
        lm = max((c.committer_date for _, c in found), default=DATA_END)
        return _Result(200, body, link, lm)

    def _link(self, path: str, query: Mapping[str, str], page: int, last: int) -> str | None:
        """GitHub's ``Link``: prev, next, last, first (each only when it applies); None for one page."""
        if last <= 1 and page <= 1:
            return None
        rels: list[tuple[int, str]] = []
        if page > 1:
            rels.append((min(page - 1, max(last, 1)), "prev"))
        if page < last:
            rels += [(page + 1, "next"), (last, "last")]
        if page > 1:
            rels.append((1, "first"))
        items = [(k, v) for k, v in query.items() if k != "page"]
        return ", ".join(
            f'<{self._api}{path}?{urlencode([*items, ("page", str(p))], quote_via=quote)}>; rel="{rel}"'
            for p, rel in rels
        )


# ------------------------------------------------------------------------------------------------ helpers


def _repo_matches(group: Sequence[_Clause], r: _Repo) -> bool:
    owner, full = r.owner.login.lower(), r.full_name.lower()
    by_key: dict[str, list[bool]] = {}
    for cl in group:
        if cl.key in ("user", "org", "repo"):
            hit = cl.value == (full if cl.key == "repo" else owner)
            if cl.negate:
                if hit:
                    return False
            else:
                by_key.setdefault(cl.key, []).append(hit)
        elif cl.key == "is" and not cl.negate and cl.value != "public":
            return False  # every repository here is public
    return all(any(hits) for hits in by_key.values())


def _commit_matches(group: Sequence[_Clause], c: _Commit) -> bool:
    by_key: dict[str, list[bool]] = {}
    for cl in group:
        if cl.key in ("user", "org", "repo", "is"):
            continue
        hit = _clause_hit(cl, c)
        if cl.negate:
            if hit:
                return False
        elif cl.key == "":
            if not hit:
                return False
        else:
            by_key.setdefault(cl.key, []).append(hit)
    return all(any(hits) for hits in by_key.values())


def _clause_hit(cl: _Clause, c: _Commit) -> bool:
    v = cl.value
    key = cl.key
    if key == "":
        return v in c.message.lower() or v in c.author_email.lower()
    if key == "author-email":
        return c.author_email.lower() == v
    if key == "committer-email":
        return c.committer_email.lower() == v
    if key == "author-name":
        return v in c.author_name.lower()
    if key == "committer-name":
        return v in c.committer_name.lower()
    if key == "author":
        return c.author is not None and c.author.login.lower() == v
    if key == "committer":
        return c.committer is not None and c.committer.login.lower() == v
    if key == "author-date":
        return v[0] <= c.author_date < v[1]
    if key == "committer-date":
        return v[0] <= c.committer_date < v[1]
    if key == "merge":
        return (len(c.parents) > 1) == (v == "true")
    if key == "hash":
        return c.sha.startswith(v)
    if key == "parent":
        return any(p.startswith(v) for p in c.parents)
    if key == "tree":
        return c.tree.startswith(v)
    return False


def _token_user_id(token: str) -> int:
    return 1_000_000 + int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "big") % 90_000_000


def _page_params(q: Mapping[str, str]) -> tuple[int, int]:
    """(per_page, page) as GitHub reads them: junk or < 1 falls back to the default, per_page caps at 100."""

    def num(name: str, default: int) -> int:
        try:
            v = int(q.get(name, default))
        except ValueError:
            return default
        return v if v >= 1 else default

    return min(num("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE), num("page", 1)


def _not_modified(request: web.Request, etag: str, last_modified: int | None) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:  # RFC 9110: If-None-Match wins over If-Modified-Since; weak comparison
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = request.headers.get("If-Modified-Since")
    if ims and last_modified is not None:
        try:
            return last_modified <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _error_obj(message: str, docs: str, status: int) -> dict[str, str]:
    return {"message": message, "documentation_url": docs, "status": str(status)}


def _error(message: str, docs: str, status: int) -> bytes:
    return orjson.dumps(_error_obj(message, docs, status))


def _validation_failed(field_name: str, code: str) -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "errors": [{"resource": "Search" if field_name == "q" else "Request", "field": field_name, "code": code}],
        "documentation_url": SEARCH_DOCS if field_name == "q" else DOCS,
        "status": "422",
    }


def _search_invalid(detail: str) -> dict[str, Any]:
    if detail.startswith("unknown"):
        message = (
            "The listed users and repositories cannot be searched either because the resources do not exist "
            "or you do not have permission to view them."
        )
    else:
        message = f"The search query is invalid: {detail}"
    return {
        "message": "Validation Failed",
        "errors": [{"message": message, "resource": "Search", "field": "q", "code": "invalid"}],
        "documentation_url": SEARCH_DOCS,
        "status": "422",
    }


if pytest is not None:

    @pytest.fixture
    def fake_github() -> Iterator[FakeGitHub]:
        """A served small GitHub (10 accounts, seed 1, any token); import this into a conftest to use it."""
        with FakeGitHub(users=10, seed=1).serve() as fake:
            yield fake


# -------------------------------------------------------------------------------------- standalone


def _parse_tokens(spec: str | None, budget: int) -> dict[str, int] | None:
    """``t1,t2`` or ``t1:100,t2`` (a per-token budget) → {token: budget}; None when not given."""
    if spec is None:
        return None
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, colon, own = item.partition(":")
        out[name] = int(own) if colon else budget
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.github", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--repos-per-user", type=int, default=3)
    parser.add_argument("--commits-per-repo", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tokens", default=None, help="t1,t2 or t1:100,t2 (omit: any token is valid)")
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--window", type=float, default=3600.0)
    parser.add_argument("--search-budget", type=int, default=30)
    parser.add_argument("--search-window", type=float, default=60.0)
    parser.add_argument("--secondary-every", type=int, default=None)
    parser.add_argument("--search-limit-status", type=int, choices=(403, 429), default=403)
    args = parser.parse_args(argv)
    fake = FakeGitHub(
        users=args.users,
        repos_per_user=args.repos_per_user,
        commits_per_repo=args.commits_per_repo,
        seed=args.seed,
        tokens=_parse_tokens(args.tokens, args.budget),
        budget=args.budget,
        window=args.window,
        search_budget=args.search_budget,
        search_window=args.search_window,
        secondary_every=args.secondary_every,
        search_limit_status=args.search_limit_status,
    )
    run_standalone(fake.make_app(), args.host, args.port, fake._bind)


if __name__ == "__main__":
    main()
