"""Loopback fake of the npm registry.

Serves full packuments (``GET /<name>``), the abbreviated "corgi" form (``Accept:
application/vnd.npm.install-v1+json``), version manifests (``GET /<name>/<version-or-tag>``), the 2025
replication feed (``GET /replicate/registry/_changes?since=&limit=``) and a set of named fault packages.

Three ways to use it::

    with FakeNpmRegistry(packages=200, seed=1).serve() as fake:      # in-process, background thread
        fetch(fake.registry_url + "pkg-000001"); fetch(fake.changes_url + "?since=0")

    def test_x(fake_npm): ...                                         # pytest fixture (import it)

    python -m tests.fakes.npm --port 0 --packages 100000 --size-profile realistic   # own process

Bodies are not stored per package: a small pool of serialized templates (lazily built, deterministic) is
rendered per request with one ``bytes % mapping`` pass that substitutes the name, rev and base URL, so
100,000 packages cost no more memory than a few hundred templates.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import collections
import hashlib
import math
import random
import re
import statistics
import threading
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread, run_standalone

try:  # the fixture is optional: the standalone process must not need pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

__all__ = [
    "CHANGES_PATH",
    "CORGI_CONTENT_TYPE",
    "FAULT_NAMES",
    "MAX_CHANGES_LIMIT",
    "FakeNpmRegistry",
    "package_index",
    "package_name",
]

SizeProfile = Literal["small", "realistic"]

CORGI_CONTENT_TYPE = "application/vnd.npm.install-v1+json"
JSON_CONTENT_TYPE = "application/json"
CHANGES_PATH = "/replicate/registry/_changes"
DEFAULT_CHANGES_LIMIT = 1000
MAX_CHANGES_LIMIT = 10_000
# npm truncates stored readmes at 64 KiB, so big packuments are big through their versions, not the readme.
README_CAP = 64 * 1024
HUGE_FAULT_SIZE = 12 * 1024 * 1024

FAULT_NOT_FOUND = "fault-not-found"
FAULT_GONE = "fault-gone"
FAULT_UNPUBLISHED = "fault-unpublished"
FAULT_RATE_LIMITED = "fault-rate-limited"
FAULT_UNAVAILABLE = "fault-unavailable"
FAULT_SLOW = "fault-slow"
FAULT_TRUNCATED = "fault-truncated"
FAULT_MALFORMED = "fault-malformed"
FAULT_HUGE = "fault-huge"
FAULT_STALE = "fault-stale"
FAULT_NAMES: tuple[str, ...] = (
    FAULT_NOT_FOUND,
    FAULT_GONE,
    FAULT_UNPUBLISHED,
    FAULT_RATE_LIMITED,
    FAULT_UNAVAILABLE,
    FAULT_SLOW,
    FAULT_TRUNCATED,
    FAULT_MALFORMED,
    FAULT_HUGE,
    FAULT_STALE,
)

# Keys npm keeps in each version of the abbreviated packument (the brief's list plus devDependencies and
# directories, which the recorded corgi sample also carries).
CORGI_VERSION_KEYS = (
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "peerDependencies",
    "bundleDependencies",
    "bin",
    "directories",
    "engines",
    "dist",
    "_hasShrinkwrap",
    "hasInstallScript",
)

_NOT_FOUND_BODY = b'{"error":"Not found"}'
_DIGITS = re.compile(r"[0-9]+")


# --------------------------------------------------------------------------------------------- names


def package_name(i: int) -> str:
    """The i-th generated package name; every 10th (i % 10 == 7) is scoped."""
    if i % 10 == 7:
        return f"@scope-{(i // 10) % 100}/name-{i:06d}"
    return f"pkg-{i:06d}"


_NAME_RE = re.compile(r"(?:pkg-|@scope-\d+/name-)(\d{6,})")


def package_index(name: str, packages: int | None = None) -> int | None:
    """Inverse of :func:`package_name` (None if ``name`` is not a generated name, or is out of range)."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return None
    i = int(m.group(1))
    if packages is not None and i >= packages:
        return None
    return i if package_name(i) == name else None


# ----------------------------------------------------------------------------------------- templates

# Placeholders written into template dicts; after serialization each becomes a ``%(key)s`` slot.
_TOKENS = ("name", "base", "owner", "rev", "reg")
T_NAME, T_BASE, T_OWNER, T_REV, T_REG = (f"{{{{{t}}}}}" for t in _TOKENS)

_WORD_TEXT = (
    "async stream parser buffer module plugin config option value request response client server "
    "cache token event handler promise callback object array string number format render build test "
    "bundle compile transform runtime browser node support default export import type schema valid "
    "error retry limit queue worker batch fetch store index query result simple fast small tiny light "
    "modern robust secure utility helper wrapper adapter binding layer core"
)
_WORDS = tuple(_WORD_TEXT.split())

_LICENSES = ("MIT", "MIT", "MIT", "ISC", "ISC", "Apache-2.0", "BSD-3-Clause", "BSD-2-Clause", "MPL-2.0")


@dataclass(frozen=True, slots=True)
class _Template:
    full: bytes  # ``%``-format template of the full packument
    corgi: bytes  # ``%``-format template of the abbreviated packument
    last_modified: str  # HTTP-date of time.modified


def _iso(ms: int) -> str:
    sec, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{milli:03d}Z"


def _to_template(obj: Any) -> bytes:
    body = orjson.dumps(obj).replace(b"%", b"%%")
    for t in _TOKENS:
        body = body.replace(f"{{{{{t}}}}}".encode(), f"%({t})s".encode())
    return body


def _versions(rng: random.Random, count: int) -> list[str]:
    major, minor, patch = rng.choice((0, 1, 1, 2)), rng.randint(0, 3), 0
    out = [f"{major}.{minor}.{patch}"]
    while len(out) < count:
        r = rng.random()
        if r < 0.03:
            for k in range(1, rng.randint(1, 3) + 1):
                out.append(f"{major + 1}.0.0-beta.{k}")
            major, minor, patch = major + 1, 0, 0
        elif r < 0.06:
            major, minor, patch = major + 1, 0, 0
        elif r < 0.3:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        out.append(f"{major}.{minor}.{patch}")
    return out[:count]


def _readme(rng: random.Random, desc: str, length: int) -> str:
    head = (
        f"# {T_NAME}\n\n{desc}\n\n## Install\n\n```sh\nnpm install {T_NAME}\n```\n\n"
        f"## Usage\n\n```js\nconst lib = require('{T_NAME}');\nlib.run();\n```\n\n## API\n\n"
    )
    need = length - len(head)
    if need <= 0:
        return head
    words = rng.choices(_WORDS, k=need // 6 + 8)
    paras = [" ".join(words[i : i + 70]) + ".\n\n" for i in range(0, len(words), 70)]
    return head + "".join(paras)[:need]


def _corgi_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The abbreviated packument of a full one (unpublished docs have no versions: served unchanged)."""
    if "versions" not in doc:
        return dict(doc)
    times = doc.get("time") or {}
    return {
        "name": doc.get("name"),
        "modified": times.get("modified") if isinstance(times, dict) else None,
        "dist-tags": doc.get("dist-tags", {}),
        "versions": {
            v: {k: m[k] for k in CORGI_VERSION_KEYS if k in m}
            for v, m in (doc.get("versions") or {}).items()
            if isinstance(m, dict)
        },
    }


def _build_docs(rng: random.Random, target: int, packages: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A full packument (with placeholders) of roughly ``target`` bytes, and its abbreviated form."""
    desc = " ".join(rng.choices(_WORDS, k=rng.randint(3, 9))).capitalize()
    keywords = rng.sample(_WORDS, rng.choice((0, 2, 3, 5, 8)))
    repo = {"type": "git", "url": f"git+https://github.com/{T_OWNER}/{T_BASE}.git"}
    homepage = f"https://github.com/{T_OWNER}/{T_BASE}#readme"
    bugs = {"url": f"https://github.com/{T_OWNER}/{T_BASE}/issues"}
    owner = {"name": T_OWNER, "email": f"{T_OWNER}@example.com"}
    maintainers = [owner] + [
        {"name": f"maint-{k}", "email": f"maint-{k}@example.com"}
        for k in rng.sample(range(500), rng.choice((0, 0, 1, 2)))
    ]
    r = rng.random()
    author: Any = dict(owner) if r < 0.7 else f"Dev {T_OWNER} <{T_OWNER}@example.com>" if r < 0.95 else None
    spdx = rng.choice(_LICENSES)
    r = rng.random()
    license_style = "spdx" if r < 0.85 else "object" if r < 0.93 else "array"
    scripts = {"test": rng.choice(("mocha", "jest", "tap test/*.js", 'echo "Error: no test specified" && exit 1'))}
    if rng.random() < 0.5:
        scripts["build"] = rng.choice(("tsc", "rollup -c", "babel src -d lib"))
    main = rng.choice(("index.js", "lib/index.js", "dist/index.js"))
    engines = {"node": rng.choice((">=10", ">=14", ">=18", "*"))} if rng.random() < 0.5 else None
    bin_ = {T_BASE: "bin/cli.js"} if rng.random() < 0.15 else None
    deprecate_all = rng.random() < 0.03
    deprecate_old = rng.random() < 0.08
    users = {f"user{rng.randrange(100_000)}": True for _ in range(rng.choice((0, 0, 1, 2, 5, 12, 40)))}

    def dep_names(k: int) -> list[str]:
        return sorted({package_name(rng.randrange(packages)) for _ in range(k)}) if packages else []

    deps = dep_names(rng.choice((0, 1, 2, 3, 4, 6, 10)))
    dev_deps = dep_names(rng.choice((0, 1, 3, 6, 10)))
    peer = dep_names(1) if rng.random() < 0.1 else []
    optional = dep_names(1) if rng.random() < 0.05 else []

    def rng_range() -> str:
        return f"{rng.choice('^^^~>')}{rng.randint(0, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"

    dep_ranges = {d: rng_range() for d in deps}
    dev_ranges = {d: rng_range() for d in dev_deps}

    def manifest(v: str, idx: int, count: int) -> dict[str, Any]:
        if rng.random() < 0.2 and dep_ranges:  # dependencies drift between releases
            d = rng.choice(list(dep_ranges))
            dep_ranges[d] = rng_range()
        m: dict[str, Any] = {
            "name": T_NAME,
            "version": v,
            "description": desc,
            "main": main,
            "scripts": scripts,
            "repository": repo,
            "keywords": keywords,
        }
        if author is not None:
            m["author"] = author
        if license_style == "spdx":
            m["license"] = spdx
        elif license_style == "object":
            m["license"] = {"type": spdx}
        else:
            m["licenses"] = [{"type": spdx, "url": f"https://opensource.org/licenses/{spdx}"}]
        if dep_ranges:
            m["dependencies"] = dict(dep_ranges)
        if dev_ranges:
            m["devDependencies"] = dev_ranges
        if peer:
            m["peerDependencies"] = {p: "*" for p in peer}
        if optional:
            m["optionalDependencies"] = {o: "^1.0.0" for o in optional}
        if bin_:
            m["bin"] = bin_
        if engines:
            m["engines"] = engines
        m["gitHead"] = rng.randbytes(20).hex()
        m["bugs"] = bugs
        m["homepage"] = homepage
        m["_id"] = f"{T_NAME}@{v}"
        m["_nodeVersion"] = f"{rng.choice((12, 14, 16, 18, 20, 22))}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        m["_npmVersion"] = f"{rng.choice((6, 8, 9, 10))}.{rng.randint(0, 19)}.{rng.randint(0, 9)}"
        m["dist"] = {
            "integrity": "sha512-" + base64.b64encode(rng.randbytes(64)).decode(),
            "shasum": rng.randbytes(20).hex(),
            "tarball": f"{T_REG}{T_NAME}/-/{T_BASE}-{v}.tgz",
            "fileCount": rng.randint(3, 120),
            "unpackedSize": rng.randint(2_000, 900_000),
        }
        m["maintainers"] = maintainers
        m["_npmUser"] = owner
        m["directories"] = {}
        m["_hasShrinkwrap"] = False
        if deprecate_all or (deprecate_old and idx < count // 2):
            m["deprecated"] = f"{T_NAME}@{v} is no longer supported, please upgrade"
        return m

    # Size the doc: estimate one version's share, split the rest between versions and readme.
    probe = len(orjson.dumps(manifest("1.0.0", 0, 1))) + 40  # + its entry in "time"
    readme_budget = min(README_CAP, int(target * rng.uniform(0.15, 0.5)))
    overhead = 900 + len(orjson.dumps(users))
    count = max(1, round((target - readme_budget - overhead) / probe))
    vers = _versions(rng, count)
    stable = [v for v in vers if "-" not in v]
    latest = stable[-1] if stable else vers[-1]
    tags = {"latest": latest}
    if vers[-1] != latest:
        tags["next"] = vers[-1]

    t = rng.randint(1_350_000_000_000, 1_700_000_000_000)
    created = t
    times: dict[str, str] = {}
    stamps: list[str] = []
    for _ in vers:
        t += rng.randint(3_600_000, 40 * 86_400_000)
        stamps.append(_iso(t))
    modified = t + rng.randint(1_000, 86_400_000)
    times["created"] = _iso(created)
    times["modified"] = _iso(modified)
    versions = {v: manifest(v, i, len(vers)) for i, v in enumerate(vers)}
    times.update(zip(vers, stamps, strict=True))

    full: dict[str, Any] = {
        "_id": T_NAME,
        "_rev": T_REV,
        "name": T_NAME,
        "description": desc,
        "dist-tags": tags,
        "versions": versions,
        "readme": "",
        "maintainers": maintainers,
        "time": times,
        "repository": repo,
        "users": users,
        "homepage": homepage,
        "keywords": keywords,
        "bugs": bugs,
    }
    if author is not None:
        full["author"] = author
    if license_style == "spdx":
        full["license"] = spdx
    elif license_style == "object":
        full["license"] = {"type": spdx}
    full["readmeFilename"] = "README.md"
    rest = target - len(orjson.dumps(full))
    full["readme"] = _readme(rng, desc, max(120, min(README_CAP, rest)))
    return full, _corgi_of(full)


def _make_template(rng: random.Random, target: int, packages: int) -> _Template:
    full, corgi = _build_docs(rng, target, packages)
    modified = _iso_to_epoch(full["time"]["modified"])
    return _Template(_to_template(full), _to_template(corgi), formatdate(modified, usegmt=True))


def _iso_to_epoch(s: str) -> float:
    """Epoch seconds of an npm ISO timestamp (``2019-08-19T22:32:42.280Z``)."""
    return float(calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")))


@dataclass(frozen=True, slots=True)
class _Profile:
    normal: int  # templates in the main pool
    median: int  # their median size, bytes (log-normal)
    sigma: float
    lo: int
    hi: int
    large: int  # 200 KB - 1 MB templates, drawn with probability p_large
    p_large: float
    huge: int  # 1 - 4 MB templates, drawn with probability p_huge
    p_huge: float


_PROFILES: dict[str, _Profile] = {
    "small": _Profile(normal=32, median=3_000, sigma=0.4, lo=1_200, hi=8_000, large=0, p_large=0, huge=0, p_huge=0),
    "realistic": _Profile(
        normal=256,
        median=10_000,
        sigma=0.85,
        lo=1_200,
        hi=200_000,
        large=8,
        p_large=0.01,
        huge=4,
        p_huge=0.001,
    ),
}


class _TemplatePool:
    """Deterministic, lazily built templates; each slot has its own RNG so build order does not matter."""

    def __init__(self, seed: int, profile: str, packages: int) -> None:
        if profile not in _PROFILES:
            raise ValueError(f"size_profile must be one of {sorted(_PROFILES)}, got {profile!r}")
        self.profile = p = _PROFILES[profile]
        self._seed = seed
        self._packages = packages
        rng = random.Random(f"{seed}:sizes")
        nd = statistics.NormalDist()
        # Stratified quantiles, not random draws: the pool's median is then exactly the profile's.
        normal = [
            int(min(p.hi, max(p.lo, p.median * math.exp(p.sigma * nd.inv_cdf((k + 0.5) / p.normal)))))
            for k in range(p.normal)
        ]
        rng.shuffle(normal)
        large = [int(math.exp(rng.uniform(math.log(200_000), math.log(1_000_000)))) for _ in range(p.large)]
        huge = [int(math.exp(rng.uniform(math.log(1_000_000), math.log(4_000_000)))) for _ in range(p.huge)]
        self._targets: dict[str, list[int]] = {"normal": normal, "large": large, "huge": huge}
        self._built: dict[str, list[_Template | None]] = {k: [None] * len(v) for k, v in self._targets.items()}

    def get(self, kind: str, idx: int) -> _Template:
        tpl = self._built[kind][idx]
        if tpl is None:  # a race only builds the same template twice
            rng = random.Random(f"{self._seed}:{kind}:{idx}")
            tpl = _make_template(rng, self._targets[kind][idx], self._packages)
            self._built[kind][idx] = tpl
        return tpl

    def pick(self, h: int) -> _Template:
        u = (h & ((1 << 53) - 1)) / (1 << 53)
        idx = (h >> 64) & 0xFFFFFFFF
        p = self.profile
        if u < p.p_huge and p.huge:
            return self.get("huge", idx % p.huge)
        if u < p.p_huge + p.p_large and p.large:
            return self.get("large", idx % p.large)
        return self.get("normal", idx % p.normal)

    def build_all(self) -> None:
        for kind, targets in self._targets.items():
            for i in range(len(targets)):
                self.get(kind, i)

    def memory_bytes(self) -> int:
        return sum(len(t.full) + len(t.corgi) for ts in self._built.values() for t in ts if t is not None)


# -------------------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class _Doc:
    """A package whose state differs from its generated default (published, deleted, extra)."""

    n: int  # revision number: the N of "N-<hex>"
    rev: str
    deleted: bool = False
    full: bytes | None = None  # explicit body; None renders the name's template
    corgi: bytes | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class _Rendered:
    body: bytes
    etag: str
    last_modified: str


def _json_response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    h = {"Content-Type": JSON_CONTENT_TYPE, "Cache-Control": "no-cache"}
    if headers:
        h.update(headers)
    return web.Response(status=status, body=body, headers=h)


def _bad_request(reason: str) -> web.Response:
    return _json_response(400, orjson.dumps({"error": "bad_request", "reason": reason}))


def _rev_number(rev: str, default: int) -> int:
    head, _, _ = rev.partition("-")
    return int(head) if head.isdigit() else default


class FakeNpmRegistry:
    """A deterministic npm registry; see the module docstring.

    Knobs readable and settable while serving (plain attributes: a read is atomic):
    ``rate_limit_every`` (every Nth request of any kind gets 429 + Retry-After), ``rate_limit_retry_after``,
    ``latency`` (seconds added to every response), ``latency_tail`` (the fraction of requests, every
    1/fraction-th, that wait ten times ``latency``: a long tail), ``slow_delay`` (the delay of
    ``fault-slow``).
    Request log: ``requests`` (Counter of package names, ``"_changes"`` or other raw paths) and
    ``total_requests``.
    """

    def __init__(
        self,
        packages: int = 100,
        seed: int = 1,
        size_profile: SizeProfile = "small",
        extra: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        include_faults_in_changes: bool = False,
        first_seq: int = 1,
        slow_delay: float = 2.0,
        rate_limit_every: int | None = None,
        latency: float = 0.0,
        latency_tail: float = 0.0,
    ) -> None:
        if packages < 0:
            raise ValueError("packages must be >= 0")
        self.packages = packages
        self.seed = seed
        self.size_profile = size_profile
        self.include_faults_in_changes = include_faults_in_changes
        self.slow_delay = slow_delay
        self.rate_limit_every = rate_limit_every
        self.rate_limit_retry_after = 1
        self.latency = latency
        self.latency_tail = latency_tail

        self.requests: collections.Counter[str] = collections.Counter()
        self.total_requests = 0
        self._fault_hits: collections.Counter[str] = collections.Counter()

        self._lock = threading.Lock()
        self._hkey = hashlib.blake2b(str(seed).encode(), digest_size=16).digest()
        self._pool = _TemplatePool(seed, size_profile, packages)
        self._huge_cache: tuple[str, bytes, bytes] | None = None  # (registry_url, full, corgi)
        self._huge_tpl: _Template | None = None

        self.registry_url = "http://127.0.0.1/"
        self.changes_url = self.registry_url + CHANGES_PATH.lstrip("/")
        self._reg_b = self.registry_url.encode()

        # The feed is the implicit base (one change per generated package, index order) followed by an
        # explicit log of (name, rev, deleted); seq of position p is _seq_offset + p + 1.
        self._base: Sequence[int] = range(packages)
        self._log: list[tuple[str, str, bool]] = []
        self._seq_offset = first_seq - 1
        self._state: dict[str, _Doc] = {}

        if include_faults_in_changes:
            for name in FAULT_NAMES:
                self._log.append((name, self._current_rev(name)[1], False))
        for name, doc in (extra or {}).items():
            self._publish(name, doc, announce=include_faults_in_changes or name not in FAULT_NAMES)

    # ------------------------------------------------------------------------------ identity

    def _hash(self, name: str) -> int:
        return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=16, key=self._hkey).digest(), "little")

    def _rev_for(self, name: str, n: int) -> str:
        return f"{n}-{hashlib.md5(f'{self.seed}:{name}:{n}'.encode()).hexdigest()}"

    def _default_n(self, name: str) -> int:
        n = 1 + (self._hash(name) >> 96) % 40
        return max(n, 2) if name == FAULT_STALE else n  # stale must have a previous rev to serve

    def _is_builtin(self, name: str) -> bool:
        return name in FAULT_NAMES or package_index(name, self.packages) is not None

    def _current_rev(self, name: str) -> tuple[int, str]:
        doc = self._state.get(name)
        if doc is not None:
            return doc.n, doc.rev
        if self._is_builtin(name):
            n = self._default_n(name)
            return n, self._rev_for(name, n)
        return 0, ""

    @staticmethod
    def fault_names() -> tuple[str, ...]:
        """Names of the fault packages (present in every registry, outside ``packages``)."""
        return FAULT_NAMES

    def package_names(self) -> Iterator[str]:
        """The generated names, in feed order (not the fault or extra ones)."""
        return (package_name(i) for i in range(self.packages))

    # ------------------------------------------------------------------------------ rendering

    def _subs(self, name: str, h: int, rev: str) -> dict[bytes, bytes]:
        scope, slash, base = name.partition("/")
        if not slash:
            base, scope = name, ""
        owner = scope[1:] if scope.startswith("@") else f"dev-{(h >> 32) % 997}"
        enc = orjson.dumps  # names may hold characters JSON must escape (publish() accepts any name)
        return {
            b"name": enc(name)[1:-1],
            b"base": enc(base)[1:-1],
            b"owner": enc(owner)[1:-1],
            b"rev": rev.encode(),
            b"reg": self._reg_b,
        }

    def _render_template(self, name: str, n: int, abbreviated: bool) -> _Rendered:
        h = self._hash(name)
        tpl = self._pool.pick(h)
        rev = self._rev_for(name, n)
        subs = self._subs(name, h, rev)
        body = (tpl.corgi if abbreviated else tpl.full) % subs
        return _Rendered(body, _etag(rev, abbreviated), tpl.last_modified)

    def _render(self, name: str, abbreviated: bool) -> _Rendered | None:
        """The 200 body of ``name`` ignoring fault behaviour; None if it does not exist."""
        doc = self._state.get(name)
        if doc is not None:
            if doc.deleted:
                return None
            if doc.full is None:
                return self._render_template(name, doc.n, abbreviated)
            body = doc.corgi if abbreviated and doc.corgi is not None else doc.full
            lm = doc.last_modified or formatdate(usegmt=True)
            return _Rendered(body, _etag(doc.rev, abbreviated), lm)
        if name in FAULT_NAMES:
            return self._render_fault_body(name, abbreviated)
        if package_index(name, self.packages) is None:
            return None
        return self._render_template(name, self._default_n(name), abbreviated)

    def _render_fault_body(self, name: str, abbreviated: bool, stale: bool = False) -> _Rendered | None:
        if name in (FAULT_NOT_FOUND, FAULT_GONE):
            return None
        n = self._default_n(name)
        if name == FAULT_UNPUBLISHED:
            body = orjson.dumps(_unpublished_doc(name))
            return _Rendered(body, _etag(self._rev_for(name, n), False), "Fri, 14 Jan 2022 12:34:23 GMT")
        if name == FAULT_MALFORMED:
            # Cut mid-document: a parser must reject it rather than guess.
            return _Rendered(
                b'{"_id":"fault-malformed","name":"fault-malformed","versions":{"1.0.0":{"name":"fault-mal',
                '"malformed"',
                "Mon, 01 Jan 2024 00:00:00 GMT",
            )
        if name == FAULT_HUGE:
            return self._render_huge(abbreviated)
        if name == FAULT_STALE and stale:
            n -= 1
        return self._render_template(name, n, abbreviated)

    def _render_huge(self, abbreviated: bool) -> _Rendered:
        tpl = self._huge_tpl
        if tpl is None:  # ~12 MB: built on first use only, then kept
            tpl = _make_template(random.Random(f"{self.seed}:huge-fault"), HUGE_FAULT_SIZE, self.packages)
            self._huge_tpl = tpl
        rev = self._rev_for(FAULT_HUGE, self._default_n(FAULT_HUGE))
        cache = self._huge_cache
        if cache is None or cache[0] != self.registry_url:
            subs = self._subs(FAULT_HUGE, self._hash(FAULT_HUGE), rev)
            cache = (self.registry_url, tpl.full % subs, tpl.corgi % subs)
            self._huge_cache = cache
        return _Rendered(cache[2] if abbreviated else cache[1], _etag(rev, abbreviated), tpl.last_modified)

    def packument_bytes(self, name: str, abbreviated: bool = False) -> bytes | None:
        """The body a successful GET of ``name`` returns (no fault behaviour); None if absent."""
        r = self._render(name, abbreviated)
        return None if r is None else r.body

    def packument(self, name: str, abbreviated: bool = False) -> dict[str, Any] | None:
        body = self.packument_bytes(name, abbreviated)
        return None if body is None else orjson.loads(body)

    def body_size(self, name: str, abbreviated: bool = False) -> int:
        """Byte size of ``name``'s body, without HTTP (for distribution checks)."""
        body = self.packument_bytes(name, abbreviated)
        return 0 if body is None else len(body)

    def prebuild(self) -> None:
        """Build every template now rather than on first use (steadier latency for a benchmark)."""
        self._pool.build_all()

    def template_bytes(self) -> int:
        """Memory held by the built templates."""
        return self._pool.memory_bytes()

    # ------------------------------------------------------------------------------ mutation

    def publish(self, name: str, packument: Mapping[str, Any] | None = None) -> str:
        """Add or update ``name`` and append a change; returns the new rev.

        ``None`` generates a packument from the name's template; a mapping is served as given (``_id`` and
        ``name`` default to ``name``, ``_rev`` to the new rev; a given ``_rev`` is announced as is)."""
        return self._publish(name, packument, announce=True)

    def _publish(self, name: str, packument: Mapping[str, Any] | None, *, announce: bool) -> str:
        with self._lock:
            n = self._current_rev(name)[0] + 1
            if packument is None:
                doc = _Doc(n=n, rev=self._rev_for(name, n))
            else:
                body = dict(packument)
                body.setdefault("_id", name)
                body.setdefault("name", name)
                rev = str(body.get("_rev") or self._rev_for(name, n))
                if "versions" in body:  # an unpublished-shaped doc stays as given
                    body["_rev"] = rev
                times = body.get("time")
                modified = times.get("modified") if isinstance(times, dict) else None
                try:
                    lm = formatdate(_iso_to_epoch(modified), usegmt=True) if modified else None
                except ValueError:
                    lm = None
                doc = _Doc(
                    n=_rev_number(rev, n),
                    rev=rev,
                    full=orjson.dumps(body),
                    corgi=orjson.dumps(_corgi_of(body)),
                    last_modified=lm,
                )
            self._state[name] = doc
            if announce:
                self._log.append((name, doc.rev, False))
            return doc.rev

    def delete(self, name: str) -> str:
        """Delete ``name`` (it then answers 404) and append a ``deleted: true`` change; returns its rev."""
        with self._lock:
            n, _ = self._current_rev(name)
            existing = self._state.get(name)
            if n == 0 or (existing is not None and existing.deleted):
                raise KeyError(name)
            rev = self._rev_for(name, n + 1)
            self._state[name] = _Doc(n=n + 1, rev=rev, deleted=True)
            self._log.append((name, rev, True))
            return rev

    def reset_seq(self, offset: int = 0, *, compact: bool = True) -> int:
        """Simulate npm resetting its sequence: renumber the feed from ``offset + 1``.

        With ``compact`` (the default, like a rebuilt CouchDB database) only each package's latest change
        is kept. Clients holding an older, larger ``since`` then get an empty page whose ``last_seq`` is
        the new, lower maximum. Returns that maximum."""
        with self._lock:
            if compact:
                last: dict[str, int] = {}
                for k, (name, _, _) in enumerate(self._log):
                    last[name] = k
                self._log = [e for k, e in enumerate(self._log) if last[e[0]] == k]
                superseded = {i for i in (package_index(nm, self.packages) for nm in last) if i is not None}
                if superseded:
                    self._base = array("q", (i for i in self._base if i not in superseded))
            self._seq_offset = offset
            return self._seq_offset + len(self._base) + len(self._log)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq_offset + len(self._base) + len(self._log)

    def reset_counters(self) -> None:
        """Clear the request log (``requests``, ``total_requests``); see also :meth:`reset_faults`."""
        with self._lock:
            self.requests.clear()
            self.total_requests = 0

    def reset_faults(self) -> None:
        """Re-arm the one-shot faults (rate-limited, unavailable, stale) as if never requested."""
        with self._lock:
            self._fault_hits.clear()

    # ------------------------------------------------------------------------------ feed

    def feed_positions(self) -> dict[str, int]:
        """The seq of every package's latest change, over all pages of the feed (read in process: no
        request is counted)."""
        positions: dict[str, int] = {}
        since: int | str = 0
        while True:
            page = self.changes_page(since, MAX_CHANGES_LIMIT)
            positions.update({change["id"]: int(change["seq"]) for change in page["results"]})
            if not page["results"] or not page.get("pending"):
                return positions
            since = page["last_seq"]

    def changes_page(self, since: int | str = 0, limit: int = DEFAULT_CHANGES_LIMIT) -> dict[str, Any]:
        """One page of the feed as a dict (what ``GET _changes`` returns)."""
        limit = min(max(limit, 0), MAX_CHANGES_LIMIT)
        with self._lock:
            base, log, offset = self._base, self._log, self._seq_offset
            total = len(base) + len(log)
            start = total if since == "now" else min(max(int(since) - offset, 0), total)
            end = min(total, start + limit)
            results: list[dict[str, Any]] = []
            nbase = len(base)
            for p in range(start, end):
                if p < nbase:
                    name = package_name(base[p])
                    rev = self._rev_for(name, self._default_n(name))
                    deleted = False
                else:
                    name, rev, deleted = log[p - nbase]
                entry: dict[str, Any] = {"seq": offset + p + 1, "id": name, "changes": [{"rev": rev}]}
                if deleted:
                    entry["deleted"] = True
                results.append(entry)
            return {"results": results, "last_seq": offset + end, "pending": total - end}

    def _doc_count(self) -> int:
        with self._lock:
            count = self.packages
            for name, doc in self._state.items():
                builtin = package_index(name, self.packages) is not None
                if builtin and doc.deleted:
                    count -= 1
                elif not builtin and name not in FAULT_NAMES and not doc.deleted:
                    count += 1
            return count

    # ------------------------------------------------------------------------------ HTTP

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(CHANGES_PATH, self._handle_changes)
        app.router.add_get("/replicate/registry/", self._handle_db_info)
        app.router.add_get("/", self._handle_db_info)
        app.router.add_get("/{tail:.+}", self._handle_package)
        return app

    def _bind(self, handle: ServerHandle) -> dict[str, Any]:
        self.registry_url = handle.base_url
        self.changes_url = handle.url(CHANGES_PATH)
        self._reg_b = self.registry_url.encode()
        return {"registry_url": self.registry_url, "changes_url": self.changes_url}

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeNpmRegistry]:
        """Serve from a background thread; yields ``self`` with ``registry_url``/``changes_url`` set."""
        with run_in_thread(self.make_app(), host, port, name="fake-npm") as handle:
            self._bind(handle)
            yield self

    def _count(self, key: str) -> int:
        with self._lock:
            self.requests[key] += 1
            self.total_requests += 1
            return self.total_requests

    def _fault_hit(self, name: str) -> int:
        with self._lock:
            self._fault_hits[name] += 1
            return self._fault_hits[name]

    async def _throttle(self, count: int) -> web.Response | None:
        every = self.rate_limit_every
        if every and count % every == 0:
            return _too_many(self.rate_limit_retry_after)
        if self.latency > 0:
            tail = self.latency_tail > 0 and count % max(round(1 / self.latency_tail), 1) == 0
            await asyncio.sleep(self.latency * (10 if tail else 1))
        return None

    async def _handle_db_info(self, request: web.Request) -> web.Response:
        limited = await self._throttle(self._count(request.path))
        if limited is not None:
            return limited
        body = {"db_name": "registry", "doc_count": self._doc_count(), "update_seq": self.last_seq}
        return _json_response(200, orjson.dumps(body))

    async def _handle_changes(self, request: web.Request) -> web.Response:
        limited = await self._throttle(self._count("_changes"))
        if limited is not None:
            return limited
        q = request.query
        if q.get("include_docs", "false").lower() not in ("false", "0", ""):
            return _bad_request("include_docs is not supported")
        feed = q.get("feed", "normal")
        if feed != "normal":
            return _bad_request(f"feed={feed} is not supported")
        since_raw = q.get("since", "0")
        # Plain ASCII digits only: int() would also take "1_000", " 7" or "+3", which a server would not.
        if since_raw != "now" and not _DIGITS.fullmatch(since_raw):
            return _bad_request("since must be a non-negative integer or 'now'")
        limit_raw = q.get("limit", str(DEFAULT_CHANGES_LIMIT))
        if not _DIGITS.fullmatch(limit_raw):
            return _bad_request("limit must be a non-negative integer")
        since: int | str = since_raw if since_raw == "now" else int(since_raw)
        page = self.changes_page(since, int(limit_raw))
        return web.Response(
            body=orjson.dumps(page), headers={"Content-Type": JSON_CONTENT_TYPE, "Cache-Control": "no-cache"}
        )

    async def _handle_package(self, request: web.Request) -> web.StreamResponse:
        name, rest = _split_path(request.raw_path)
        limited = await self._throttle(self._count(name or request.path))
        if limited is not None:
            return limited
        if not name or (rest and rest[0] == "-"):  # tarballs are not served
            return _json_response(404, _NOT_FOUND_BODY)
        # Version manifests are always served in full, as the real registry does.
        abbreviated = not rest and CORGI_CONTENT_TYPE in request.headers.get("Accept", "")

        rendered: _Rendered | None
        if name in FAULT_NAMES and name not in self._state:
            fault = await self._fault_response(request, name, abbreviated, bool(rest))
            if isinstance(fault, web.StreamResponse):
                return fault
            rendered = fault
        else:
            rendered = self._render(name, abbreviated)
        if rendered is None:
            return _json_response(404, _NOT_FOUND_BODY)
        if rest:
            return self._version_response(rendered, rest[0])
        headers = {
            "Content-Type": CORGI_CONTENT_TYPE if abbreviated else JSON_CONTENT_TYPE,
            "ETag": rendered.etag,
            "Last-Modified": rendered.last_modified,
            "Cache-Control": "public, max-age=300",
            "Vary": "Accept",
        }
        if request.headers.get("If-None-Match") == rendered.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=rendered.body, headers=headers)

    async def _fault_response(
        self, request: web.Request, name: str, abbreviated: bool, sub: bool
    ) -> web.StreamResponse | _Rendered | None:
        if name == FAULT_NOT_FOUND:
            return None
        if name == FAULT_GONE:
            return _json_response(410, b'{"error":"Gone"}')
        if name == FAULT_RATE_LIMITED and self._fault_hit(name) <= 2:
            return _too_many(1)
        if name == FAULT_UNAVAILABLE and self._fault_hit(name) <= 1:
            return _json_response(503, b'{"error":"Service Unavailable"}', {"Retry-After": "1"})
        if name == FAULT_SLOW:
            await asyncio.sleep(self.slow_delay)
        stale = name == FAULT_STALE and self._fault_hit(name) <= 1
        rendered = self._render_fault_body(name, abbreviated, stale=stale)
        if name == FAULT_TRUNCATED and rendered is not None and not sub:
            return await _truncated(request, rendered.body, abbreviated)
        return rendered

    @staticmethod
    def _version_response(rendered: _Rendered, spec: str) -> web.Response:
        """``GET /<name>/<version-or-tag>``: rare in a crawl, so parsing the packument here is fine."""
        try:
            doc = orjson.loads(rendered.body)
        except orjson.JSONDecodeError:
            return _json_response(500, b'{"error":"internal server error"}')
        version = (doc.get("dist-tags") or {}).get(spec, spec)
        manifest = (doc.get("versions") or {}).get(version)
        if manifest is None:
            return _json_response(404, orjson.dumps({"error": f"version not found: {spec}"}))
        return web.Response(body=orjson.dumps(manifest), headers={"Content-Type": JSON_CONTENT_TYPE})


def _etag(rev: str, abbreviated: bool) -> str:
    return f'"{rev.partition("-")[2] or rev}{"-c" if abbreviated else ""}"'


def _too_many(retry_after: int) -> web.Response:
    return _json_response(429, b'{"error":"Too Many Requests"}', {"Retry-After": str(retry_after)})


async def _truncated(request: web.Request, body: bytes, abbreviated: bool) -> web.StreamResponse:
    """Announce the full Content-Length, send half, then drop the connection (a reset mid-body)."""
    resp = web.StreamResponse(headers={"Content-Type": CORGI_CONTENT_TYPE if abbreviated else JSON_CONTENT_TYPE})
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes; aiohttp sees a lost peer
    return resp


def _unpublished_doc(name: str) -> dict[str, Any]:
    return {
        "_id": name,
        "name": name,
        "time": {
            "created": "2021-10-29T08:21:56.032Z",
            "0.0.1": "2021-10-29T08:21:56.206Z",
            "0.0.2": "2021-11-02T10:00:00.000Z",
            "modified": "2022-01-14T12:34:23.941Z",
            "unpublished": {"time": "2022-01-14T12:34:23.941Z", "versions": ["0.0.1", "0.0.2"]},
        },
    }


def _split_path(raw_path: str) -> tuple[str, list[str]]:
    """``/@scope%2Fname/1.0.0`` → (``@scope/name``, [``1.0.0``]); the slash may be encoded or not."""
    path = raw_path.partition("?")[0].lstrip("/")
    segs = path.split("/")
    first = unquote(segs[0]) if "%" in segs[0] else segs[0]
    if first.startswith("@") and "/" not in first and len(segs) > 1 and segs[1]:
        name = first + "/" + (unquote(segs[1]) if "%" in segs[1] else segs[1])
        rest = segs[2:]
    else:
        name, rest = first, segs[1:]
    return name, [unquote(s) for s in rest if s]


if pytest is not None:

    @pytest.fixture
    def fake_npm() -> Iterator[FakeNpmRegistry]:
        """A served small registry (50 packages, seed 1); import this into a conftest to use it."""
        with FakeNpmRegistry(packages=50, seed=1).serve() as fake:
            yield fake


# -------------------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.npm", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size-profile", choices=sorted(_PROFILES), default="small")
    parser.add_argument("--include-faults-in-changes", action="store_true")
    parser.add_argument("--first-seq", type=int, default=1)
    parser.add_argument("--slow-delay", type=float, default=2.0)
    parser.add_argument("--rate-limit-every", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--latency-tail", type=float, default=0.0, help="fraction of requests 10x slower")
    parser.add_argument("--lazy", action="store_true", help="build templates on first use instead of before listening")
    args = parser.parse_args(argv)
    fake = FakeNpmRegistry(
        packages=args.packages,
        seed=args.seed,
        size_profile=args.size_profile,
        include_faults_in_changes=args.include_faults_in_changes,
        first_seq=args.first_seq,
        slow_delay=args.slow_delay,
        rate_limit_every=args.rate_limit_every,
        latency=args.latency,
        latency_tail=args.latency_tail,
    )
    if not args.lazy:  # < 0.5 s, and keeps template builds out of a benchmark's timings
        fake.prebuild()
    run_standalone(fake.make_app(), args.host, args.port, fake._bind)


if __name__ == "__main__":
    main()
