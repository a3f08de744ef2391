"""Loopback fake of the Python Package Index.

Serves the simple repository API (``GET /simple/`` and ``GET /simple/<project>/``, PEP 691 JSON or PEP 503
HTML by content negotiation), the legacy JSON API (``GET /pypi/<project>/json`` and
``GET /pypi/<project>/<version>/json``), core metadata files (``GET /packages/.../<wheel>.metadata``,
PEP 658), the RSS feeds (``/rss/updates.xml``, ``/rss/packages.xml``) and a set of named fault projects.

Three ways to use it::

    with FakePyPI(projects=200, seed=1).serve() as fake:               # in-process, background thread
        fetch(fake.url + "simple/"); fetch(fake.url + "pypi/<name>/json")

    def test_x(fake_pypi): ...                                          # pytest fixture (import it)

    python -m tests.fakes.pypi --port 0 --projects 100000 --size-profile realistic   # own process

Bodies are not stored per project: a pool of serialized templates (lazily built, deterministic) is rendered
per request with one ``bytes % mapping`` pass that substitutes the display name, normalized name, serial and
base URL. Only projects changed through :meth:`FakePyPI.publish` keep a document of their own.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import dataclasses
import hashlib
import html
import math
import random
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Literal
from xml.sax.saxutils import escape as xml_escape

import orjson
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread, run_standalone

try:  # the fixture is optional: the standalone process must not need pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

__all__ = [
    "FAULT_NAMES",
    "SIMPLE_API_VERSION",
    "SIMPLE_HTML_CONTENT_TYPE",
    "SIMPLE_JSON_CONTENT_TYPE",
    "FakePyPI",
    "negotiate",
    "normalize",
]

SizeProfile = Literal["small", "realistic"]
SimpleFormat = Literal["json", "html", "both"]

SIMPLE_API_VERSION = "1.3"
SIMPLE_JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
RSS_ITEMS = 40

FAULT_NOT_FOUND = "fault-not-found"
FAULT_MALFORMED = "fault-malformed"
FAULT_RATE_LIMITED = "fault-rate-limited"
FAULT_UNAVAILABLE = "fault-unavailable"
FAULT_HUGE = "fault-huge"
FAULT_UNKNOWN_FIELDS = "fault-unknown-fields"
FAULT_YANKED_ONLY = "fault-yanked-only"
FAULT_NAMES: tuple[str, ...] = (
    FAULT_NOT_FOUND,
    FAULT_MALFORMED,
    FAULT_RATE_LIMITED,
    FAULT_UNAVAILABLE,
    FAULT_HUGE,
    FAULT_UNKNOWN_FIELDS,
    FAULT_YANKED_ONLY,
)
_FAULT_SET = frozenset(FAULT_NAMES)
HUGE_FAULT_RELEASES = 5_000

_NOT_FOUND_JSON = b'{"message": "Not Found"}'
_NOT_FOUND_HTML = b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>"
# Exactly what the real service sends with its 301s (recorded cassette).
_MOVED_HTML = (
    b"<html><head><title>301 Moved Permanently</title></head><body><center><h1>301 Moved Permanently</h1>"
    b"</center></body></html>"
)

# --------------------------------------------------------------------------------------------- names

_NORM_RE = re.compile(r"[-_.]+")
# PEP 508 project names: what publish() accepts, and why names never need escaping in URLs, JSON or HTML.
_VALID_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)


def normalize(name: str) -> str:
    """PEP 503 normalized form of a project name."""
    return _NORM_RE.sub("-", name).lower()


_WORD_TEXT = (
    "aio api app async auth auto base batch bio block bot build cache calc cell chart check chem cli client "
    "cloud code color config core cron crypto csv cube dash data date debug deep dev dict diff disk doc dns "
    "edit email env event excel feed file filter flow form frame fuzzy game geo git graph grid hash http "
    "image index info io jinja job json jwt kafka key lab lang lib light link lint list log mail map markdown "
    "math matrix media mesh meta mock model money mongo net neural node note num oauth object open orm pack "
    "page pandas parse path pdf pipe plot plugin poly pool port post pretty print proc profile proto proxy "
    "query queue quick rand range redis regex render report request rest retry route rpc rule run safe scan "
    "schema scrape sci search secure seq serial server shell signal simple site sky slack smart snap sock "
    "sound spark speech sql stack stat store stream string sync table task tensor term text thread time tiny "
    "token tool trace tree type unit url util uuid valid vector view vision web wiki word work xml yaml zip"
)
_WORDS = tuple(_WORD_TEXT.split())
_FAMILIES = ("django", "flask", "pytest", "sphinxcontrib", "types", "mkdocs", "jupyter", "napari", "odoo", "zope")
_OWNER_SUFFIXES = ("", "-dev", "labs", "-io", "hq", "-org", "team", "py", "-oss", "42", "2019", "-ai")
_GHSA_ALPHABET = "23456789cfghjmpqrvwx"


def _styled_name(rng: random.Random) -> str:
    """One display name in a style seen in the wild; many are deliberately not normalized."""
    n = len(_WORDS)
    a, b, c = (_WORDS[int(rng.random() * n)] for _ in range(3))
    r = rng.random()
    if r < 0.30:
        return f"{a}-{b}"
    if r < 0.40:
        return f"{a}_{b}"
    if r < 0.50:
        return a + b
    if r < 0.57:
        return a.capitalize() + b.capitalize()  # FlaskCache
    if r < 0.63:
        return f"{a.capitalize()}-{b.capitalize()}"  # Django-Thing
    if r < 0.69:
        return f"{a}.{b}"  # zope.interface
    if r < 0.73:
        return f"{a}.{b.capitalize()}{rng.randint(2, 9)}"  # zope.Interface2
    if r < 0.77:
        return f"{a.capitalize()}_{b.capitalize()}.{c}"  # Foo_Bar.baz
    if r < 0.91:
        fam = _FAMILIES[int(rng.random() * len(_FAMILIES))]
        s = rng.random()
        if s < 0.5:
            return f"{fam}-{a}"
        if s < 0.7:
            return f"{fam.capitalize()}-{a.capitalize()}"
        if s < 0.85:
            return f"{fam}_{a}"
        return f"{fam}-{a}-{b}"
    if r < 0.95:
        return f"{a}{rng.randint(2, 9)}"
    return f"{a}-{b}-{c}"


def _generate_names(seed: int, count: int) -> tuple[list[str], dict[str, int]]:
    """Display names and the normalized-name -> index map (the only per-project state kept in memory)."""
    rng = random.Random(f"{seed}:names")
    names: list[str] = []
    index: dict[str, int] = {}
    for i in range(count):
        name = _styled_name(rng)
        norm = normalize(name)
        while norm in index or norm in _FAULT_SET:  # clashes get a numeric suffix, as people do
            name = f"{name}{rng.choice('-_')}{i}"
            norm = normalize(name)
        index[norm] = i
        names.append(name)
    return names, index


# ----------------------------------------------------------------------------------------- versions

_VER_RE = re.compile(
    r"(?P<rel>\d+(?:\.\d+)*)(?:(?P<pre>a|b|rc)(?P<pren>\d+))?(?:\.post(?P<post>\d+))?(?:\.dev(?P<dev>\d+))?"
)
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}


def _vkey(v: str) -> tuple[tuple[int, ...], tuple[int, int], int, int]:
    """A PEP 440 sort key for the version shapes this fake produces (others sort first)."""
    m = _VER_RE.fullmatch(v)
    if m is None:
        return (-1,), (0, 0), -1, 0
    rel = [int(x) for x in m["rel"].split(".")]
    while len(rel) > 1 and rel[-1] == 0:
        rel.pop()
    if m["pre"]:
        pre = (_PRE_RANK[m["pre"]], int(m["pren"]))
    elif m["dev"] and not m["post"]:
        pre = (-1, 0)  # 1.0.dev1 < 1.0a1
    else:
        pre = (3, 0)
    post = int(m["post"]) if m["post"] else -1
    dev = int(m["dev"]) if m["dev"] else 1 << 62
    return tuple(rel), pre, post, dev


def _is_pre(v: str) -> bool:
    m = _VER_RE.fullmatch(v)
    return m is not None and bool(m["pre"] or m["dev"])


def _next_version(versions: Sequence[str]) -> str:
    """The release after the highest final one: bump its last component."""
    finals = sorted((v for v in versions if not _is_pre(v) and _VER_RE.fullmatch(v)), key=_vkey)
    if not finals:
        return "0.1.0"
    rel = _VER_RE.fullmatch(finals[-1])["rel"].split(".")  # type: ignore[index]
    rel[-1] = str(int(rel[-1]) + 1)
    candidate = ".".join(rel)
    while candidate in versions:
        rel[-1] = str(int(rel[-1]) + 1)
        candidate = ".".join(rel)
    return candidate


# ----------------------------------------------------------------------------------------- templates

# Placeholders written into template documents; after serialization each becomes a ``%(key)s`` slot.
T_NAME, T_NORM, T_WHEEL, T_BASE, T_OWNER, T_SERIAL, T_VID, T_VNUM, T_VERSION = (
    "{{name}}",
    "{{norm}}",
    "{{wheel}}",
    "{{base}}",
    "{{owner}}",
    "{{serial}}",
    "{{vid}}",
    "{{vnum}}",
    "{{version}}",
)
_TOKEN_RE = re.compile(rb"\{\{([a-z]+[0-9]*)\}\}")


def _to_template(raw: bytes) -> bytes:
    # The serial is an integer in JSON: its quoted placeholder becomes a bare slot.
    body = raw.replace(b"%", b"%%").replace(b'"{{serial}}"', b"%(serial)s")
    return _TOKEN_RE.sub(rb"%(\1)s", body)


_SORT = orjson.OPT_SORT_KEYS  # the real JSON API sorts keys (``releases`` included), so clients cannot rely on order

_FIRST = ("Alice", "Bob", "Carmen", "Dmitri", "Emeka", "Fatima", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena")
_LAST = ("Smith", "Garcia", "Okafor", "Ivanova", "Chen", "Muller", "Rossi", "Tanaka", "Nowak", "Silva")
_DEV_STATUS = (
    "Development Status :: 3 - Alpha",
    "Development Status :: 4 - Beta",
    "Development Status :: 5 - Production/Stable",
)
_AUDIENCES = (
    "Intended Audience :: Developers",
    "Intended Audience :: Science/Research",
    "Intended Audience :: System Administrators",
)
_TOPICS = (
    "Topic :: Software Development :: Libraries :: Python Modules",
    "Topic :: Utilities",
    "Topic :: Internet :: WWW/HTTP",
    "Topic :: Scientific/Engineering",
    "Topic :: System :: Monitoring",
    "Topic :: Text Processing",
)
# (license field, classifier, SPDX expression)
_LICENSES = (
    ("MIT", "License :: OSI Approved :: MIT License", "MIT"),
    ("MIT License", "License :: OSI Approved :: MIT License", "MIT"),
    ("Apache License 2.0", "License :: OSI Approved :: Apache Software License", "Apache-2.0"),
    ("BSD-3-Clause", "License :: OSI Approved :: BSD License", "BSD-3-Clause"),
    ("GPLv3", "License :: OSI Approved :: GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
    (
        "LGPL-3.0-or-later",
        "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)",
        "LGPL-3.0-or-later",
    ),
    ("MPL 2.0", "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
)
_MIT_TEXT = (
    "MIT License\n\nCopyright (c) 2020 The Authors\n\nPermission is hereby granted, free of charge, to any person "
    'obtaining a copy of this software and associated documentation files (the "Software"), to deal in the '
    "Software without restriction, including without limitation the rights to use, copy, modify, merge, publish, "
    'distribute, sublicense, and/or sell copies of the Software.\n\nTHE SOFTWARE IS PROVIDED "AS IS", WITHOUT '
    "WARRANTY OF ANY KIND."
)
_YANK_REASONS = (
    "Broken wheel, please use the next release",
    "Security issue, see the advisory",
    "Released by mistake",
    "Incompatible with Python 3.12 <see changelog>",
)
_BINARY_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "musllinux_1_1_x86_64",
    "macosx_10_9_x86_64",
    "macosx_11_0_arm64",
    "win_amd64",
)


@dataclass(frozen=True, slots=True)
class _Features:
    """What a template shows; assigned by template slot (not drawn), so even a small pool has each kind."""

    old: bool = False  # old JSON schema: no license_expression / description_content_type / ownership
    unknown: bool = False  # old metadata full of UNKNOWN
    vulns: int = 0
    yank: int = 0  # 0 none, 1 one with a reason, 2 one without, 3 both
    pre: bool = False
    pep639: bool = False  # license_expression + license_files, no license classifier
    mit_empty: bool = False  # empty license field, license only in a classifier
    binary: bool = False  # platform wheels


def _features(k: int) -> _Features:
    old = k % 10 == 3
    return _Features(
        old=old,
        unknown=old and (k // 10) % 2 == 0,
        vulns=1 + (k // 12) % 3 if k % 12 == 5 else 0,
        yank=1 + (k // 4) % 3 if k % 4 == 1 else 0,
        pre=k % 5 == 2 or k % 7 == 0,
        pep639=not old and k % 3 == 0,
        mit_empty=not old and k % 6 == 4,
        binary=k % 9 == 6,
    )


def _hex(rng: random.Random, nbytes: int) -> str:
    return rng.randbytes(nbytes).hex()


def _iso_us(ts: float, micro: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{micro:06d}Z"


def _file(
    rng: random.Random, filename: str, packagetype: str, pyver: str, rp: str | None, ts: float, size: int
) -> dict[str, Any]:
    b2, md5, sha = _hex(rng, 32), _hex(rng, 16), _hex(rng, 32)
    iso = _iso_us(ts, rng.randrange(1_000_000))
    return {
        "comment_text": "",
        "digests": {"blake2b_256": b2, "md5": md5, "sha256": sha},
        "downloads": -1,
        "filename": filename,
        "has_sig": False,
        "md5_digest": md5,
        "packagetype": packagetype,
        "python_version": pyver,
        "requires_python": rp,
        "size": size,
        "upload_time": iso[:19],
        "upload_time_iso_8601": iso,
        "url": f"{T_BASE}packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{filename}",
        "yanked": False,
        "yanked_reason": None,
    }


def _release_files(
    rng: random.Random, version: str, ts: float, feats: _Features, idx: int, count: int, rp: str | None
) -> list[dict[str, Any]]:
    old = feats.old
    if old and idx < max(1, count // 10) and rng.random() < 0.5:
        return []  # registered without uploading anything, as many early projects did
    sdist_base = T_NAME if old else T_WHEEL  # PEP 625 sdist names are recent
    ext = ".zip" if old and idx < count // 3 else ".tar.gz"
    sdist_size = int(math.exp(rng.gauss(10.5, 1.2)))
    files = [_file(rng, f"{sdist_base}-{version}{ext}", "sdist", "source", rp, ts, sdist_size)]
    if old and idx < count // 2:
        return files  # wheels came later
    if feats.binary:
        pythons = rng.sample(("cp39", "cp310", "cp311", "cp312", "cp313"), 2)
        plats = rng.sample(_BINARY_PLATFORMS, 3)
        for k, (py, plat) in enumerate((p, q) for p in sorted(pythons) for q in plats):
            fn = f"{T_WHEEL}-{version}-{py}-{py}-{plat}.whl"
            files.append(_file(rng, fn, "bdist_wheel", py, rp, ts + 5 + k, int(sdist_size * rng.uniform(1.5, 4))))
    else:
        tag = "py2.py3-none-any" if old else "py3-none-any"
        fn = f"{T_WHEEL}-{version}-{tag}.whl"
        files.append(_file(rng, fn, "bdist_wheel", "py3", rp, ts - 2, int(sdist_size * rng.uniform(0.6, 1.4))))
    return files


def _versions(rng: random.Random, count: int, feats: _Features) -> list[str]:
    two = feats.old  # old projects often use two-part versions

    def fmt(a: int, b: int, c: int) -> str:
        return f"{a}.{b}" if two and c == 0 else f"{a}.{b}.{c}"

    major, minor, patch = rng.choice((0, 0, 1, 1, 2, 3)), rng.randint(0, 4), 0
    out = [fmt(major, minor, patch)]
    while len(out) < count:
        r = rng.random()
        if feats.pre and r < 0.1:
            nxt = major + 1
            for tag in rng.choice((("rc1",), ("b1", "rc1"), ("a1", "b1", "rc1", "rc2"))):
                out.append(fmt(nxt, 0, 0) + tag)
            major, minor, patch = nxt, 0, 0
        elif r < 0.14:
            major, minor, patch = major + 1, 0, 0
        elif r < 0.4:
            minor, patch = minor + 1, 0
        else:
            patch += 1
        out.append(fmt(major, minor, patch))
    out = out[:count]
    if feats.pre and count > 1 and (rng.random() < 0.6 or not any(_is_pre(v) for v in out)):
        # The newest upload is a pre-release: info.version must skip it.
        out[-1] = fmt(major + 1, 0, 0) + "rc1"
    return out


def _description(rng: random.Random, summary: str, length: int, rst: bool) -> str:
    if rst:
        head = (
            f"{T_NAME}\n{'=' * 12}\n\n{summary}\n\nInstallation\n------------\n\n.. code-block:: bash\n\n"
            f"    pip install {T_NAME}\n\nUsage\n-----\n\n"
        )
    else:
        head = (
            f"# {T_NAME}\n\n{summary}\n\n## Installation\n\n```bash\npip install {T_NAME}\n```\n\n"
            f"## Usage\n\n```python\nimport {T_WHEEL}\n{T_WHEEL}.run()\n```\n\n"
        )
    need = length - len(head)
    if need <= 0:
        return head
    words = rng.choices(_WORDS, k=need // 5 + 8)
    paras = [" ".join(words[i : i + 60]) + ".\n\n" for i in range(0, len(words), 60)]
    return head + "".join(paras)[:need]


def _vulnerabilities(rng: random.Random, n: int, versions: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    finals = [v for v in versions if not _is_pre(v)] or list(versions)
    for k in range(n):
        fixed = finals[max(0, min(len(finals) - 1, int(len(finals) * rng.uniform(0.3, 0.95))))]
        year = rng.randint(2019, 2024)
        tail = "-".join("".join(rng.choice(_GHSA_ALPHABET) for _ in range(4)) for _ in range(2))
        vid = f"GHSA-{T_VID}-{tail}" if k % 2 == 0 else f"PYSEC-{year}-{T_VNUM}{k}"
        out.append(
            {
                "aliases": [f"CVE-{year}-{T_VNUM}{k}"],
                "details": f"A crafted request makes {T_NAME} {rng.choice(_WORDS)} unbounded input. "
                f"Upgrade to {fixed} or later.",
                "fixed_in": [fixed],
                "id": vid,
                "link": f"https://osv.dev/vulnerability/{vid}",
                "source": "osv",
                "summary": rng.choice((None, f"Denial of service in {T_NAME}")),
                "withdrawn": None,
            }
        )
    return out


def _project_urls(rng: random.Random) -> tuple[dict[str, str] | None, str]:
    """(project_urls, home_page) of a current-schema project; most point at a GitHub repository."""
    r = rng.random()
    gh = f"https://github.com/{T_OWNER}/{T_NAME}"
    if r < 0.72:
        urls = {"Homepage": gh, rng.choice(("Source", "Repository", "Source Code")): gh}
        if rng.random() < 0.6:
            urls[rng.choice(("Issues", "Bug Tracker"))] = gh + "/issues"
        if rng.random() < 0.4:
            urls["Documentation"] = f"https://{T_NORM}.readthedocs.io/"
        if rng.random() < 0.3:
            urls["Changelog"] = gh + "/blob/main/CHANGELOG.md"
        return urls, rng.choice(("", gh))
    if r < 0.82:
        gl = f"https://gitlab.com/{T_OWNER}/{T_NORM}"
        return {"Homepage": gl, "Repository": gl}, ""
    if r < 0.94:
        return {"Homepage": f"https://{T_NORM}.example.org/"}, ""
    return None, ""


def _make_doc(
    rng: random.Random, target: int, feats: _Features, deps: Sequence[str], releases: int | None = None
) -> dict[str, Any]:
    """A JSON API document (with placeholders) of roughly ``target`` bytes, or with ``releases`` releases."""
    old, unknown = feats.old, feats.unknown
    summary = " ".join(rng.choices(_WORDS, k=rng.randint(3, 9))).capitalize()
    person = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    email = f"{T_OWNER}@example.com"
    rp = None if old else rng.choice((">=3.8", ">=3.9", ">=3.10", ">=3.7", "~=3.6", ">=3.8,<4", ""))
    pyvers = sorted(rng.sample(("3.8", "3.9", "3.10", "3.11", "3.12", "3.13"), rng.randint(2, 5)))
    lic_field, lic_cls, spdx = rng.choice(_LICENSES)

    classifiers = [rng.choice(_DEV_STATUS), rng.choice(_AUDIENCES)]
    license_expression: str | None = None
    license_files: list[str] | None = None
    license_: str | None
    if feats.pep639:
        license_expression = spdx if rng.random() < 0.8 else f"{spdx} OR Apache-2.0"
        license_files = ["LICENSE"] if rng.random() < 0.7 else ["LICENSE", "NOTICE"]
        license_ = None
    elif feats.mit_empty:
        license_ = ""
        classifiers.append("License :: OSI Approved :: MIT License")
    else:
        license_ = _MIT_TEXT if lic_field.startswith("MIT") and rng.random() < 0.15 else lic_field
        classifiers.append(lic_cls)
    classifiers += ["Operating System :: OS Independent", "Programming Language :: Python :: 3"]
    classifiers += [f"Programming Language :: Python :: {v}" for v in pyvers]
    classifiers += rng.sample(_TOPICS, rng.randint(1, 2))
    classifiers.sort()

    req: list[str] | None = None
    extras: list[str] | None = None
    if deps and not unknown:
        picked = sorted({deps[int(rng.random() * len(deps))] for _ in range(rng.choice((0, 1, 2, 3, 5, 8)))})
        req = [f"{d}>={rng.randint(0, 5)}.{rng.randint(0, 20)}" for d in picked]
        if picked and rng.random() < 0.4:
            extras = ["dev"]
            req.append(f'{picked[0]}[test]; extra == "dev"')
        if picked and rng.random() < 0.2:
            req.append(f'{picked[-1]}; python_version < "3.11"')
        req = req or None

    if old:
        project_urls = None
        home_page = "UNKNOWN" if unknown else rng.choice((f"https://github.com/{T_OWNER}/{T_NAME}", ""))
    else:
        project_urls, home_page = _project_urls(rng)
    rst = old or rng.random() < 0.3
    info: dict[str, Any] = {
        "author": "UNKNOWN" if unknown else rng.choice((person, person, "")),
        "author_email": "UNKNOWN" if unknown else rng.choice((email, f"{person} <{email}>", None)),
        "bugtrack_url": None,
        "classifiers": [] if unknown else classifiers,
        "description": "",
        "description_content_type": "text/x-rst" if rst else "text/markdown",
        "docs_url": None,
        "download_url": "UNKNOWN" if unknown else rng.choice(("", None)),
        "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
        "dynamic": None if old or rng.random() < 0.6 else ["license-file"],
        "home_page": home_page,
        "keywords": "" if unknown else rng.choice(("", None, ",".join(rng.sample(_WORDS, 3)))),
        "license": "UNKNOWN" if unknown else license_,
        "license_expression": license_expression,
        "license_files": license_files,
        "maintainer": None if old else rng.choice(("", person)),
        "maintainer_email": None if old else rng.choice(("", email)),
        "name": T_NAME,
        "package_url": f"{T_BASE}project/{T_NORM}/",
        "platform": "UNKNOWN" if unknown else None,
        "project_url": f"{T_BASE}project/{T_NORM}/",
        "project_urls": project_urls,
        "provides_extra": extras,
        "release_url": "",
        "requires_dist": req,
        "requires_python": rp,
        "summary": summary,
        "version": "",
        "yanked": False,
        "yanked_reason": None,
    }
    if old:
        for key in ("license_expression", "license_files", "description_content_type"):
            del info[key]

    # Size the document: estimate one release's share, split the rest between releases and description.
    probe_rng = random.Random(0)
    probe = len(orjson.dumps(_release_files(probe_rng, "1.10.2", 1.6e9, feats, 10**6, 10**6, rp))) + 12
    sized = releases is None
    if releases is None:
        desc_budget = min(16_000, int(target * rng.uniform(0.08, 0.35)))
        overhead = len(orjson.dumps(info)) + 300
        releases = max(1, round((target - desc_budget - overhead) / probe))
    if feats.pre or feats.yank:
        releases = max(releases, 3)
    versions = _versions(rng, releases, feats)

    start = rng.uniform(1.33e9, 1.64e9)
    step = (1.735e9 - start) / (len(versions) + 1)
    ts = start
    release_map: dict[str, list[dict[str, Any]]] = {}
    for idx, v in enumerate(versions):
        ts += step * rng.uniform(0.2, 1.8) if len(versions) > 1 else 0
        release_map[v] = _release_files(rng, v, ts, feats, idx, len(versions), rp)

    with_files = [v for v in versions[:-1] if release_map[v]] or [v for v in versions if release_map[v]]
    yanked: dict[str, str | None] = {}
    if feats.yank and with_files:
        picks = rng.sample(with_files, min(len(with_files), 2 if feats.yank == 3 else 1))
        reasons: list[str | None] = [rng.choice(_YANK_REASONS), None]
        if feats.yank == 2:
            reasons = [None]
        for v, reason in zip(picks, reasons, strict=False):
            yanked[v] = reason
    for v, reason in yanked.items():
        for f in release_map[v]:
            f["yanked"], f["yanked_reason"] = True, reason

    doc: dict[str, Any] = {
        "info": info,
        "last_serial": T_SERIAL,
        "releases": release_map,
        "urls": [],
        "vulnerabilities": _vulnerabilities(rng, feats.vulns, versions),
    }
    if not old:
        doc["ownership"] = {
            "organization": None if rng.random() < 0.8 else f"{T_OWNER}-org",
            "roles": [{"role": "Owner", "user": T_OWNER}],
        }
        if rng.random() < 0.3:
            maintainer = f"{rng.choice(_FIRST).lower()}{rng.randint(1, 99)}"
            doc["ownership"]["roles"].append({"role": "Maintainer", "user": maintainer})
    _set_latest(doc)
    if sized:
        rest = target - len(orjson.dumps(doc))
        info["description"] = _description(rng, summary, max(120, min(24_000, rest)), rst)
    else:
        info["description"] = _description(rng, summary, 400, rst)
    return doc


def _set_latest(doc: dict[str, Any]) -> None:
    """info.version = newest release that is neither yanked nor a pre-release (falling back like the service)."""
    releases: dict[str, list[dict[str, Any]]] = doc["releases"]
    ordered = sorted(releases, key=_vkey)

    def yanked(v: str) -> bool:
        return bool(releases[v]) and all(f["yanked"] for f in releases[v])

    latest = next((v for v in reversed(ordered) if not yanked(v) and not _is_pre(v)), None)
    latest = latest or next((v for v in reversed(ordered) if not yanked(v)), None)
    latest = latest or (ordered[-1] if ordered else "")
    info = doc["info"]
    info["version"] = latest
    info["release_url"] = f"{T_BASE}project/{T_NORM}/{latest}/" if latest else ""
    files = releases.get(latest, [])
    info["yanked"] = bool(files) and all(f["yanked"] for f in files)
    info["yanked_reason"] = files[0]["yanked_reason"] if info["yanked"] else None
    doc["urls"] = files


def _unknown_fields_doc() -> dict[str, Any]:
    """Every info field UNKNOWN or empty, releases registered without files (very old uploads look so)."""
    info: dict[str, Any] = {
        "author": "UNKNOWN",
        "author_email": "UNKNOWN",
        "bugtrack_url": None,
        "classifiers": [],
        "description": "UNKNOWN",
        "description_content_type": None,
        "docs_url": None,
        "download_url": "UNKNOWN",
        "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
        "dynamic": None,
        "home_page": "UNKNOWN",
        "keywords": "",
        "license": "UNKNOWN",
        "license_expression": None,
        "license_files": None,
        "maintainer": "",
        "maintainer_email": "",
        "name": T_NAME,
        "package_url": f"{T_BASE}project/{T_NORM}/",
        "platform": "UNKNOWN",
        "project_url": f"{T_BASE}project/{T_NORM}/",
        "project_urls": None,
        "provides_extra": None,
        "release_url": "",
        "requires_dist": None,
        "requires_python": "",
        "summary": "UNKNOWN",
        "version": "",
        "yanked": False,
        "yanked_reason": None,
    }
    doc = {
        "info": info,
        "last_serial": T_SERIAL,
        "ownership": {"organization": None, "roles": []},
        "releases": {"0.1": [], "0.2": [], "1.0": []},
        "urls": [],
        "vulnerabilities": [],
    }
    _set_latest(doc)
    return doc


def _yanked_only_doc(seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:{FAULT_YANKED_ONLY}")
    doc = _make_doc(rng, 0, _Features(), (), releases=4)
    ordered = sorted(doc["releases"], key=_vkey)
    for v in ordered:
        reason = "Broken build, do not use" if v == ordered[-1] else None
        for f in doc["releases"][v]:
            f["yanked"], f["yanked_reason"] = True, reason
    _set_latest(doc)
    return doc


# ------------------------------------------------------------------------------ derived representations


def _simple_files(
    doc: Mapping[str, Any], metadata_hash: Callable[[str], str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """PEP 691 file entries (upload order) and the version list of a JSON API document."""
    releases: Mapping[str, list[dict[str, Any]]] = doc["releases"]
    versions = sorted(releases, key=_vkey)
    files: list[dict[str, Any]] = []
    for v in versions:
        for f in releases[v]:
            # Only wheels carry extractable metadata (what the service backfilled), sdists announce none.
            cm: Any = {"sha256": metadata_hash(v)} if f["filename"].endswith(".whl") else False
            files.append(
                {
                    "core-metadata": cm,
                    "data-dist-info-metadata": cm,
                    "filename": f["filename"],
                    "hashes": {"sha256": f["digests"]["sha256"]},
                    "provenance": None,
                    "requires-python": f["requires_python"],
                    "size": f["size"],
                    "upload-time": f["upload_time_iso_8601"],
                    "url": f["url"],
                    "yanked": (f["yanked_reason"] or True) if f["yanked"] else False,
                }
            )
    return files, versions


def _simple_json_obj(files: list[dict[str, Any]], versions: list[str], norm: str, serial: Any) -> dict[str, Any]:
    return {
        "alternate-locations": [],
        "files": files,
        "meta": {"_last-serial": serial, "api-version": SIMPLE_API_VERSION},
        "name": norm,
        "versions": versions,
    }


def _simple_html(display: str, files: list[dict[str, Any]], serial: Any) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{SIMPLE_API_VERSION}">',
        f"    <title>Links for {display}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {display}</h1>",
    ]
    for f in files:
        attrs = ""
        if f["requires-python"]:
            attrs += f' data-requires-python="{html.escape(f["requires-python"])}"'
        yanked = f["yanked"]
        if yanked is not False:
            attrs += f' data-yanked="{html.escape(yanked) if isinstance(yanked, str) else ""}"'
        cm = f["core-metadata"]
        if cm:
            attrs += f' data-dist-info-metadata="sha256={cm["sha256"]}" data-core-metadata="sha256={cm["sha256"]}"'
        href = f"{f['url']}#sha256={f['hashes']['sha256']}"
        lines.append(f'    <a href="{href}"{attrs}>{f["filename"]}</a><br />')
    lines += ["  </body>", "</html>", f"<!--SERIAL {serial}-->"]
    return "\n".join(lines) + "\n"


def _core_metadata(info: Mapping[str, Any], version: str) -> str:
    """The METADATA file of a wheel (RFC 822 headers, description as the body)."""
    lines: list[str] = []

    def add(key: str, value: Any) -> None:
        if value:  # None, "" and [] are omitted, as build backends do
            lines.append(f"{key}: {str(value).replace(chr(10), chr(10) + '        ')}")

    # License-Expression needs metadata 2.4 (PEP 639); everything else here is 2.1.
    add("Metadata-Version", "2.4" if info.get("license_expression") else "2.1")
    add("Name", info["name"])
    add("Version", version)
    add("Summary", info.get("summary"))
    add("Home-page", info.get("home_page"))
    add("Download-URL", info.get("download_url"))
    add("Author", info.get("author"))
    add("Author-email", info.get("author_email"))
    add("Maintainer", info.get("maintainer"))
    add("Maintainer-email", info.get("maintainer_email"))
    add("License", info.get("license"))
    add("License-Expression", info.get("license_expression"))
    for f in info.get("license_files") or ():
        add("License-File", f)
    add("Keywords", info.get("keywords"))
    add("Platform", info.get("platform"))
    for c in info.get("classifiers") or ():
        add("Classifier", c)
    add("Requires-Python", info.get("requires_python"))
    for r in info.get("requires_dist") or ():
        add("Requires-Dist", r)
    for e in info.get("provides_extra") or ():
        add("Provides-Extra", e)
    for label, url in (info.get("project_urls") or {}).items():
        add("Project-URL", f"{label}, {url}")
    add("Description-Content-Type", info.get("description_content_type"))
    return "\n".join(lines) + "\n\n" + (info.get("description") or "") + "\n"


@dataclass(frozen=True, slots=True)
class _Template:
    api: bytes  # ``%``-format template of the JSON API document
    simple_json: bytes  # ... of the PEP 691 project page
    simple_html: bytes  # ... of the PEP 503 project page
    metadata: bytes  # ... of the core metadata, with a ``%(version)s`` slot
    mh_keys: tuple[bytes, ...]  # slot names of the metadata hashes in the simple pages
    mh_versions: tuple[bytes, ...]  # the version each of those hashes is computed for
    wheel_versions: frozenset[str]
    latest: str
    summary: str

    def size(self) -> int:
        return len(self.api) + len(self.simple_json) + len(self.simple_html) + len(self.metadata)


def _compile(doc: dict[str, Any]) -> _Template:
    order: dict[str, int] = {}

    def mh(v: str) -> str:
        k = order.setdefault(v, len(order))
        return "{{mh%d}}" % k  # noqa: UP031  (braces of a placeholder: f-string escaping would hide it)

    files, versions = _simple_files(doc, mh)
    return _Template(
        api=_to_template(orjson.dumps(doc, option=_SORT)),
        simple_json=_to_template(orjson.dumps(_simple_json_obj(files, versions, T_NORM, T_SERIAL), option=_SORT)),
        simple_html=_to_template(_simple_html(T_NAME, files, T_SERIAL).encode()),
        metadata=_to_template(_core_metadata(doc["info"], T_VERSION).encode()),
        mh_keys=tuple(b"mh%d" % k for k in order.values()),
        mh_versions=tuple(v.encode() for v in order),
        wheel_versions=frozenset(order),
        latest=doc["info"]["version"],
        summary=doc["info"]["summary"] or "",
    )


@dataclass(frozen=True, slots=True)
class _Profile:
    normal: int  # templates in the main pool
    median: int  # their median JSON API size, bytes (log-normal)
    sigma: float
    lo: int
    hi: int
    large: int  # templates with thousands of releases (MB-sized documents), drawn with probability p_large
    p_large: float


_PROFILES: dict[str, _Profile] = {
    "small": _Profile(normal=32, median=3_000, sigma=0.9, lo=1_000, hi=30_000, large=0, p_large=0.0),
    "realistic": _Profile(normal=256, median=8_500, sigma=0.8, lo=2_000, hi=250_000, large=6, p_large=0.01),
}


class _TemplatePool:
    """Deterministic, lazily built templates; each slot has its own RNG so build order does not matter."""

    def __init__(self, seed: int, profile: str, deps: Sequence[str]) -> None:
        if profile not in _PROFILES:
            raise ValueError(f"size_profile must be one of {sorted(_PROFILES)}, got {profile!r}")
        self.profile = p = _PROFILES[profile]
        self._seed = seed
        self._deps = deps
        rng = random.Random(f"{seed}:sizes")
        nd = statistics.NormalDist()
        # Stratified quantiles, not random draws: the pool's median is then exactly the profile's.
        normal = [
            int(min(p.hi, max(p.lo, p.median * math.exp(p.sigma * nd.inv_cdf((k + 0.5) / p.normal)))))
            for k in range(p.normal)
        ]
        rng.shuffle(normal)
        # Release counts of the large ones: "thousands of releases", 1-4 MB documents.
        large = [int(math.exp(rng.uniform(math.log(1_000), math.log(2_800)))) for _ in range(p.large)]
        self._targets: dict[str, list[int]] = {"normal": normal, "large": large}
        self._built: dict[str, list[_Template | None]] = {k: [None] * len(v) for k, v in self._targets.items()}

    def get(self, kind: str, idx: int) -> _Template:
        tpl = self._built[kind][idx]
        if tpl is None:  # a race only builds the same template twice
            rng = random.Random(f"{self._seed}:{kind}:{idx}")
            if kind == "large":
                # Thousands of releases are what makes these big; platform wheels would make them 10+ MB.
                feats = dataclasses.replace(_features(idx * 10 + 1), binary=False)
                doc = _make_doc(rng, 0, feats, self._deps, releases=self._targets[kind][idx])
            else:
                doc = _make_doc(rng, self._targets[kind][idx], _features(idx), self._deps)
            tpl = _compile(doc)
            self._built[kind][idx] = tpl
        return tpl

    def pick(self, h: int) -> _Template:
        u = (h & ((1 << 53) - 1)) / (1 << 53)
        idx = (h >> 64) & 0xFFFFFFFF
        p = self.profile
        if u < p.p_large and p.large:
            return self.get("large", idx % p.large)
        return self.get("normal", idx % p.normal)

    def build_all(self) -> None:
        for kind, targets in self._targets.items():
            for i in range(len(targets)):
                self.get(kind, i)

    def memory_bytes(self) -> int:
        return sum(t.size() for ts in self._built.values() for t in ts if t is not None)


# -------------------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class _Proj:
    """A project as served: generated (doc None: rendered from a template) or changed by publish()."""

    norm: str
    display: str
    serial: int
    deleted: bool = False
    doc: dict[str, Any] | None = None  # explicit JSON API document; only ``{{base}}`` left to substitute
    created: bool = False  # made by publish(), not one of the generated projects


def _etag(norm: str, serial: int, kind: str) -> str:
    digest = hashlib.blake2b(f"{norm}:{serial}:{kind}".encode(), digest_size=16).digest()
    return '"' + base64.b64encode(digest).decode().rstrip("=") + '"'


# Media types the simple API can answer with, in the server's order of preference for a tie (the real
# service falls back to HTML for ``*/*``): (offered type, format, Content-Type sent).
_OFFERS = (
    ("text/html", "html", TEXT_HTML),
    (SIMPLE_HTML_CONTENT_TYPE, "html", SIMPLE_HTML_CONTENT_TYPE),
    ("application/vnd.pypi.simple.latest+html", "html", SIMPLE_HTML_CONTENT_TYPE),
    (SIMPLE_JSON_CONTENT_TYPE, "json", SIMPLE_JSON_CONTENT_TYPE),
    ("application/vnd.pypi.simple.latest+json", "json", SIMPLE_JSON_CONTENT_TYPE),
)


def negotiate(accept: str, allow_json: bool, allow_html: bool) -> tuple[str, str] | None:
    """PEP 691 content negotiation: (format, Content-Type) for an Accept header, or None for 406."""
    ranges: list[tuple[str, float]] = []
    for part in (accept or "*/*").split(","):
        mtype, *params = (s.strip() for s in part.split(";"))
        if not mtype:
            continue
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranges.append((mtype.lower(), q))
    best: tuple[float, int, int] | None = None
    choice: tuple[str, str] | None = None
    for pref, (offer, fmt, ctype) in enumerate(_OFFERS):
        if (fmt == "json" and not allow_json) or (fmt == "html" and not allow_html):
            continue
        major = offer.split("/")[0]
        # The most specific matching range decides this offer's q (RFC 9110 section 12.5.1).
        spec, q = -1, 0.0
        for mtype, mq in ranges:
            s = 2 if mtype == offer else 1 if mtype == f"{major}/*" else 0 if mtype == "*/*" else -1
            if s > spec:
                spec, q = s, mq
        if spec < 0 or q <= 0:
            continue
        score = (q, spec, -pref)
        if best is None or score > best:
            best, choice = score, (fmt, ctype)
    return choice


# --------------------------------------------------------------------------------------------- fake


class FakePyPI:
    """A deterministic PyPI; see the module docstring.

    Request log: ``requests`` (Counter keyed by normalized project name for ``/pypi/<name>/...`` and
    ``/simple/<name>/``, ``"/simple/"`` for the index, ``"rss"`` for both feeds, ``"/packages/"`` for
    metadata files) and ``total_requests``.
    """

    def __init__(
        self,
        projects: int = 100,
        seed: int = 1,
        size_profile: SizeProfile = "small",
        *,
        simple_format: SimpleFormat = "both",
        json_api: bool = True,
        first_serial: int = 1000,
        include_faults: bool = False,
    ) -> None:
        if projects < 0:
            raise ValueError("projects must be >= 0")
        if simple_format not in ("json", "html", "both"):
            raise ValueError(f"simple_format must be json, html or both, got {simple_format!r}")
        if first_serial < 1:
            raise ValueError("first_serial must be >= 1")
        self.projects = projects
        self.seed = seed
        self.size_profile = size_profile
        self.simple_format = simple_format
        self.json_api = json_api
        self.first_serial = first_serial
        self.include_faults = include_faults

        self.requests: collections.Counter[str] = collections.Counter()
        self.total_requests = 0
        self._fault_hits: collections.Counter[str] = collections.Counter()

        self._lock = threading.RLock()
        self._hkey = hashlib.blake2b(str(seed).encode(), digest_size=16).digest()
        self._names, self._index = _generate_names(seed, projects)
        self._pool = _TemplatePool(seed, size_profile, self._names)
        self._fault_tpls: dict[str, _Template] = {}

        self.url = "http://127.0.0.1/"
        self.simple_url = self.url + "simple/"
        self._base_b = self.url.encode()

        # Serials: generated project i got its last serial in [first + 3i, first + 3i + 2] (newer index, newer
        # project); fault projects follow them; every mutation takes the next one.
        self._fault_serial0 = first_serial + 3 * projects
        self._next_serial = self._fault_serial0 + len(FAULT_NAMES)
        if include_faults:
            self._last_serial = self._next_serial - 1
        elif projects:
            self._last_serial = self._base_serial(projects - 1)
        else:
            self._last_serial = first_serial - 1
        self._state: dict[str, _Proj] = {}
        self._updates: list[tuple[int, str, str]] = []  # (serial, normalized name, version) per publish
        self._created: list[tuple[int, str]] = []  # (serial, normalized name) of projects publish() made
        self._index_cache: dict[str, tuple[int, bytes]] = {}  # format -> (last serial, body)

    # ------------------------------------------------------------------------------ identity

    @staticmethod
    def normalize(name: str) -> str:
        return normalize(name)

    @staticmethod
    def fault_names() -> tuple[str, ...]:
        """Names of the fault projects (always served, listed in the index only with ``include_faults``)."""
        return FAULT_NAMES

    def project_names(self) -> list[str]:
        """Display names of the generated projects, in creation order (not the fault ones)."""
        return list(self._names)

    def _hash(self, norm: str) -> int:
        return int.from_bytes(hashlib.blake2b(norm.encode(), digest_size=16, key=self._hkey).digest(), "little")

    def _base_serial(self, i: int) -> int:
        # A cheap integer mix instead of a hash: building the 100,000-entry index needs every one.
        return self.first_serial + 3 * i + ((i * 2_654_435_761 + self.seed) >> 7) % 3

    def _entry(self, norm: str) -> _Proj | None:
        """The live project behind a normalized name (None if unknown or deleted)."""
        st = self._state.get(norm)
        if st is not None:
            return None if st.deleted else st
        i = self._index.get(norm)
        if i is not None:
            return _Proj(norm, self._names[i], self._base_serial(i))
        if norm in _FAULT_SET and norm != FAULT_NOT_FOUND:
            return _Proj(norm, norm, self._fault_serial0 + FAULT_NAMES.index(norm))
        return None

    def serial_of(self, name: str) -> int | None:
        """Last serial of a live project (None if unknown or deleted)."""
        p = self._entry(normalize(name))
        return None if p is None else p.serial

    @property
    def last_serial(self) -> int:
        """The highest serial of the index: what ``meta._last-serial`` and ``X-PyPI-Last-Serial`` say."""
        with self._lock:
            return self._last_serial

    # ------------------------------------------------------------------------------ rendering

    def _source(self, p: _Proj, h: int | None = None) -> _Template | dict[str, Any]:
        if p.doc is not None:
            return p.doc
        if p.norm in _FAULT_SET:
            tpl = self._fault_tpls.get(p.norm)
            if tpl is None:  # built on first use, then kept (fault-huge is ~7 MB)
                if p.norm == FAULT_HUGE:
                    rng = random.Random(f"{self.seed}:{FAULT_HUGE}")
                    tpl = _compile(_make_doc(rng, 0, _Features(), self._names, releases=HUGE_FAULT_RELEASES))
                elif p.norm == FAULT_UNKNOWN_FIELDS:
                    tpl = _compile(_unknown_fields_doc())
                elif p.norm == FAULT_YANKED_ONLY:
                    tpl = _compile(_yanked_only_doc(self.seed))
                else:
                    tpl = self._pool.pick(self._hash(p.norm))
                self._fault_tpls[p.norm] = tpl
            return tpl
        return self._pool.pick(self._hash(p.norm) if h is None else h)

    def _subs(self, p: _Proj, base: bytes | None = None, h: int | None = None) -> dict[bytes, bytes]:
        if h is None:
            h = self._hash(p.norm)
        owner = _WORDS[(h >> 20) % len(_WORDS)] + _OWNER_SUFFIXES[(h >> 40) % len(_OWNER_SUFFIXES)]
        vid = "".join(_GHSA_ALPHABET[(h >> (70 + 5 * k)) % 20] for k in range(4))
        return {
            b"name": p.display.encode(),
            b"norm": p.norm.encode(),
            b"wheel": p.norm.replace("-", "_").encode(),
            b"base": self._base_b if base is None else base,
            b"owner": owner.encode(),
            b"serial": b"%d" % p.serial,
            b"vid": vid.encode(),
            b"vnum": b"%04d" % ((h >> 100) % 10_000),
        }

    def _api_bytes(self, p: _Proj) -> bytes:
        h = self._hash(p.norm)
        src = self._source(p, h)
        if isinstance(src, _Template):
            return src.api % self._subs(p, h=h)
        return orjson.dumps(src, option=_SORT).replace(b"{{base}}", self._base_b)

    def _doc_metadata(self, doc: Mapping[str, Any], version: str) -> bytes:
        return _core_metadata(doc["info"], version).encode().replace(b"{{base}}", self._base_b)

    def _simple_bytes(self, p: _Proj, fmt: str) -> bytes:
        h = self._hash(p.norm)
        src = self._source(p, h)
        if isinstance(src, _Template):
            subs = self._subs(p, h=h)
            meta = src.metadata
            # The announced hashes must match the metadata files served: compute them for this project.
            for key, v in zip(src.mh_keys, src.mh_versions, strict=True):
                subs[b"version"] = v
                subs[key] = hashlib.sha256(meta % subs).hexdigest().encode()
            return (src.simple_json if fmt == "json" else src.simple_html) % subs
        doc = src

        def mh(v: str) -> str:
            return hashlib.sha256(self._doc_metadata(doc, v)).hexdigest()

        files, versions = _simple_files(doc, mh)
        if fmt == "json":
            body = orjson.dumps(_simple_json_obj(files, versions, p.norm, p.serial), option=_SORT)
        else:
            body = _simple_html(p.display, files, p.serial).encode()
        return body.replace(b"{{base}}", self._base_b)

    def _metadata_bytes(self, p: _Proj, version: str) -> bytes | None:
        src = self._source(p)
        if isinstance(src, _Template):
            if version not in src.wheel_versions:
                return None
            subs = self._subs(p)
            subs[b"version"] = version.encode()
            return src.metadata % subs
        files = src["releases"].get(version) or ()
        if not any(f["filename"].endswith(".whl") for f in files):
            return None
        return self._doc_metadata(src, version)

    def _doc_of(self, p: _Proj) -> dict[str, Any]:
        """A private, mutable JSON API document of ``p`` (base URL left as a placeholder)."""
        src = self._source(p)
        if isinstance(src, _Template):
            return orjson.loads(src.api % self._subs(p, base=b"{{base}}"))
        return copy.deepcopy(src)

    # Public, HTTP-free views (tests, size checks).

    def project_json_bytes(self, name: str) -> bytes | None:
        """The body ``GET /pypi/<name>/json`` returns (no fault behaviour); None if absent."""
        p = self._entry(normalize(name))
        return None if p is None else self._api_bytes(p)

    def project_json(self, name: str) -> dict[str, Any] | None:
        body = self.project_json_bytes(name)
        return None if body is None else orjson.loads(body)

    def simple_page_bytes(self, name: str, fmt: Literal["json", "html"] = "json") -> bytes | None:
        p = self._entry(normalize(name))
        return None if p is None else self._simple_bytes(p, fmt)

    def core_metadata(self, name: str, version: str) -> bytes | None:
        p = self._entry(normalize(name))
        return None if p is None else self._metadata_bytes(p, version)

    def body_size(self, name: str) -> int:
        """Byte size of the JSON API body of ``name``, without HTTP (for distribution checks)."""
        body = self.project_json_bytes(name)
        return 0 if body is None else len(body)

    def prebuild(self) -> None:
        """Build every template now rather than on first use (steadier latency for a benchmark)."""
        self._pool.build_all()

    def template_bytes(self) -> int:
        """Memory held by the built templates."""
        return self._pool.memory_bytes()

    # ------------------------------------------------------------------------------ mutation

    def _bump(self) -> int:
        serial = self._next_serial
        self._next_serial += 1
        self._last_serial = serial
        return serial

    def publish(self, name: str, version: str | None = None) -> int:
        """Upload a new release of ``name`` (sdist + wheel), creating the project if needed.

        The project's serial becomes the new global maximum and an RSS update is added (a new project also
        appears in ``packages.xml``). ``version`` defaults to the next patch release. Returns the serial."""
        if not _VALID_NAME.fullmatch(name):
            raise ValueError(f"not a valid project name: {name!r}")
        norm = normalize(name)
        if norm in _FAULT_SET:
            raise ValueError("fault projects cannot be published")
        with self._lock:
            cur = self._entry(norm)
            if cur is None:
                tpl_proj = _Proj(norm, name, 0)
                doc = self._doc_of(tpl_proj)
                doc["releases"], doc["vulnerabilities"] = {}, []
                display, created = name, True
            else:
                doc = self._doc_of(cur)
                display, created = cur.display, cur.created
            version = version or _next_version(list(doc["releases"]))
            if version in doc["releases"]:
                raise ValueError(f"{name} {version} already exists")
            serial = self._bump()
            self._add_release(doc, norm, version, serial)
            doc["info"]["name"] = display
            doc["last_serial"] = serial
            self._state[norm] = _Proj(norm, display, serial, doc=doc, created=created)
            if cur is None:
                self._created.append((serial, norm))
            self._updates.append((serial, norm, version))
            return serial

    def _add_release(self, doc: dict[str, Any], norm: str, version: str, serial: int) -> None:
        rng = random.Random(f"{self.seed}:{norm}:{serial}")
        ts = self._serial_time(serial)
        rp = doc["info"].get("requires_python") or None
        wheel = norm.replace("-", "_")
        size = rng.randint(5_000, 500_000)
        doc["releases"][version] = [
            _file(rng, f"{wheel}-{version}-py3-none-any.whl", "bdist_wheel", "py3", rp, ts, size),
            _file(rng, f"{wheel}-{version}.tar.gz", "sdist", "source", rp, ts + 1, int(size * 0.8)),
        ]
        _set_latest(doc)
        # _set_latest writes placeholder URLs; this document only keeps the base URL as one.
        info = doc["info"]
        info["release_url"] = info["release_url"].replace(T_NORM, norm)

    def delete(self, name: str) -> int:
        """Delete a project: it then 404s on both APIs and leaves the index. Returns the new serial."""
        norm = normalize(name)
        with self._lock:
            cur = self._entry(norm)
            if cur is None or norm in _FAULT_SET:
                raise KeyError(name)
            serial = self._bump()
            self._state[norm] = _Proj(norm, cur.display, serial, deleted=True, created=cur.created)
            return serial

    def rename_display(self, name: str, new_display: str) -> int:
        """Change a project's display name (same normalized name, as the service allows). Returns the serial."""
        norm = normalize(name)
        if not _VALID_NAME.fullmatch(new_display) or normalize(new_display) != norm:
            raise ValueError(f"{new_display!r} does not normalize to {norm!r}")
        with self._lock:
            cur = self._entry(norm)
            if cur is None or norm in _FAULT_SET:
                raise KeyError(name)
            serial = self._bump()
            doc = None
            if cur.doc is not None:
                doc = copy.deepcopy(cur.doc)
                doc["info"]["name"] = new_display
                doc["last_serial"] = serial
            self._state[norm] = _Proj(norm, new_display, serial, doc=doc, created=cur.created)
            return serial

    def reset_counters(self) -> None:
        """Clear the request log (``requests``, ``total_requests``); see also :meth:`reset_faults`."""
        with self._lock:
            self.requests.clear()
            self.total_requests = 0

    def reset_faults(self) -> None:
        """Re-arm the one-shot faults (rate-limited, unavailable) as if never requested."""
        with self._lock:
            self._fault_hits.clear()

    # ------------------------------------------------------------------------------ index and feeds

    def _serial_time(self, serial: int) -> float:
        # Serials map onto a clock so feeds order consistently: one journal entry every 37 s from 2025-01-01.
        return 1_735_689_600.0 + (serial - self.first_serial) * 37.0

    def _index_entries(self) -> tuple[int, list[tuple[str, str, int]]]:
        with self._lock:
            state = dict(self._state)
            last = self._last_serial
        out: list[tuple[str, str, int]] = []
        names = self._names
        for norm, i in self._index.items():
            st = state.get(norm)
            if st is None:
                out.append((norm, names[i], self._base_serial(i)))
            elif not st.deleted:
                out.append((norm, st.display, st.serial))
        for norm, st in state.items():
            if norm not in self._index and not st.deleted:
                out.append((norm, st.display, st.serial))
        if self.include_faults:
            out += [(f, f, self._fault_serial0 + k) for k, f in enumerate(FAULT_NAMES)]
        out.sort()
        return last, out

    def index_bytes(self, fmt: Literal["json", "html"] = "json") -> tuple[int, bytes]:
        """(last serial, body) of ``/simple/``; cached until the next mutation (~5 MB per 100,000 projects)."""
        cached = self._index_cache.get(fmt)
        if cached is not None and cached[0] == self.last_serial:
            return cached
        last, entries = self._index_entries()
        if fmt == "json":
            projects = [{"_last-serial": s, "name": d} for _, d, s in entries]
            meta = {"_last-serial": last, "api-version": SIMPLE_API_VERSION}
            body = orjson.dumps({"meta": meta, "projects": projects})
        else:
            head = (
                "<!DOCTYPE html>\n<html>\n  <head>\n"
                f'    <meta name="pypi:repository-version" content="{SIMPLE_API_VERSION}">\n'
                "    <title>Simple index</title>\n  </head>\n  <body>\n"
            )
            links = "".join(f'    <a href="/simple/{n}/">{d}</a>\n' for n, d, _ in entries)
            body = (head + links + f"  </body>\n</html>\n<!--SERIAL {last}-->\n").encode()
        self._index_cache[fmt] = (last, body)
        return last, body

    def _summary(self, p: _Proj) -> tuple[str, str]:
        """(latest version, summary) for the feeds."""
        src = self._source(p)
        if isinstance(src, _Template):
            return src.latest, src.summary
        return src["info"]["version"], src["info"]["summary"] or ""

    def _rss_updates(self) -> bytes:
        with self._lock:
            updates = list(self._updates)
        items: list[tuple[int, _Proj, str, str]] = []
        for serial, norm, version in reversed(updates):
            p = self._entry(norm)
            if p is not None:
                items.append((serial, p, version, self._summary(p)[1]))
            if len(items) >= RSS_ITEMS:
                break
        i = self.projects - 1
        while len(items) < RSS_ITEMS and i >= 0:
            p = self._entry(normalize(self._names[i]))
            if p is not None:
                version, summary = self._summary(p)
                items.append((self._base_serial(i), p, version, summary))
            i -= 1
        base = self.url
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"',
            ' "http://www.rssboard.org/rss-0.91.dtd">',
            '<rss version="0.91">',
            "  <channel>",
            "    <title>PyPI recent updates</title>",
            f"    <link>{base}</link>",
            "    <description>Recent updates to the Python Package Index</description>",
            "    <language>en</language>",
        ]
        for serial, p, version, summary in items:
            out += [
                "    <item>",
                f"      <title>{p.display} {xml_escape(version)}</title>",
                f"      <link>{base}project/{p.norm}/{xml_escape(version)}/</link>",
                f"      <description>{xml_escape(summary)}</description>",
                f"      <pubDate>{formatdate(self._serial_time(serial), usegmt=True)}</pubDate>",
                "    </item>",
            ]
        out += ["  </channel>", "</rss>"]
        return "\n".join(out).encode()

    def _rss_packages(self) -> bytes:
        with self._lock:
            created = list(self._created)
        items: list[tuple[int, _Proj]] = []
        seen: set[str] = set()
        for serial, norm in reversed(created):
            p = self._entry(norm)
            if p is not None and p.created and norm not in seen:
                seen.add(norm)
                items.append((serial, p))
            if len(items) >= RSS_ITEMS:
                break
        i = self.projects - 1
        while len(items) < RSS_ITEMS and i >= 0:
            p = self._entry(normalize(self._names[i]))
            if p is not None:
                items.append((self._base_serial(i), p))
            i -= 1
        base = self.url
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<rss version="2.0">',
            "    <channel>",
            "        <title>PyPI newest packages</title>",
            f"        <link>{base}</link>",
            "        <description>Newest packages registered at the Python Package Index</description>",
            "        <language>en</language>",
        ]
        for serial, p in items:
            link = f"{base}project/{p.norm}/"
            out += [
                "        <item>",
                f"            <title>{p.display} added to PyPI</title>",
                f"            <link>{link}</link>",
                f"            <guid>{link}</guid>",
                f"            <description>{xml_escape(self._summary(p)[1])}</description>",
            ]
            if serial % 3 == 0:  # the author element is optional in the real feed
                out.append(f"            <author>{p.norm}@example.com</author>")
            out += [
                f"            <pubDate>{formatdate(self._serial_time(serial), usegmt=True)}</pubDate>",
                "        </item>",
            ]
        out += ["    </channel>", "</rss>"]
        return "\n".join(out).encode()

    # ------------------------------------------------------------------------------ HTTP

    def make_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/simple/", self._handle_index)
        r.add_get("/simple", self._handle_redirect_index)
        r.add_get("/simple/{name}/", self._handle_simple_project)
        r.add_get("/simple/{name}", self._handle_simple_project)
        r.add_get("/pypi/{name}/json", self._handle_json)
        r.add_get("/pypi/{name}/json/", self._handle_json)
        r.add_get("/pypi/{name}/{version}/json", self._handle_json)
        r.add_get("/pypi/{name}/{version}/json/", self._handle_json)
        r.add_get("/pypi/{tail:.*}", self._handle_pypi_other)
        r.add_get("/packages/{tail:.+}", self._handle_packages)
        r.add_get("/rss/updates.xml", self._handle_rss)
        r.add_get("/rss/packages.xml", self._handle_rss)
        return app

    def _bind(self, handle: ServerHandle) -> dict[str, Any]:
        self.url = handle.base_url
        self.simple_url = handle.url("simple/")
        self._base_b = self.url.encode()
        with self._lock:
            self._index_cache.clear()
        return {"url": self.url, "simple_url": self.simple_url}

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakePyPI]:
        """Serve from a background thread; yields ``self`` with ``url``/``simple_url`` set."""
        with run_in_thread(self.make_app(), host, port, name="fake-pypi") as handle:
            self._bind(handle)
            yield self

    def _count(self, key: str) -> None:
        with self._lock:
            self.requests[key] += 1
            self.total_requests += 1

    def _fault_hit(self, key: str) -> int:
        with self._lock:
            self._fault_hits[key] += 1
            return self._fault_hits[key]

    def _serial_header(self, serial: int | None = None) -> dict[str, str]:
        return {"X-PyPI-Last-Serial": str(self.last_serial if serial is None else serial)}

    def _moved(self, location: str) -> web.Response:
        headers = {"Location": location, "Content-Type": "text/html; charset=UTF-8", "Retry-After": "0"}
        headers.update(self._serial_header())
        return web.Response(status=301, body=_MOVED_HTML, headers=headers)

    def _not_found(self, json_body: bool) -> web.Response:
        headers = {"Content-Type": JSON_CONTENT_TYPE if json_body else TEXT_HTML, **self._serial_header()}
        return web.Response(status=404, body=_NOT_FOUND_JSON if json_body else _NOT_FOUND_HTML, headers=headers)

    def _transient_fault(self, api: str, norm: str, serial: int) -> web.Response | None:
        """429 twice / 503 once per API for the rate-limited / unavailable faults, then None (serve normally)."""
        if norm == FAULT_RATE_LIMITED and self._fault_hit(f"{api}:{norm}") <= 2:
            status, body = 429, b"429 Too Many Requests"
        elif norm == FAULT_UNAVAILABLE and self._fault_hit(f"{api}:{norm}") <= 1:
            status, body = 503, b"503 Service Unavailable"
        else:
            return None
        headers = {"Retry-After": "1", "Content-Type": "text/plain; charset=utf-8", **self._serial_header(serial)}
        return web.Response(status=status, body=body, headers=headers)

    def _negotiate(self, request: web.Request) -> tuple[str, str] | None:
        # PEP 691 lets a URL parameter stand in for the Accept header.
        accept = request.query.get("format") or request.headers.get("Accept", "")
        fmt = self.simple_format
        return negotiate(accept, fmt in ("json", "both"), fmt in ("html", "both"))

    def _not_acceptable(self) -> web.Response:
        headers = {"Vary": "Accept", "Content-Type": "text/plain; charset=utf-8", **self._serial_header()}
        return web.Response(status=406, body=b"406 Not Acceptable", headers=headers)

    async def _handle_redirect_index(self, request: web.Request) -> web.Response:
        return self._moved("/simple/")

    async def _handle_index(self, request: web.Request) -> web.Response:
        self._count("/simple/")
        chosen = self._negotiate(request)
        if chosen is None:
            return self._not_acceptable()
        fmt, ctype = chosen
        last, body = self.index_bytes("json" if fmt == "json" else "html")
        headers = {"Content-Type": ctype, "Vary": "Accept", "Cache-Control": "max-age=600, public"}
        headers["X-PyPI-Last-Serial"] = str(last)
        return web.Response(body=body, headers=headers)

    async def _handle_simple_project(self, request: web.Request) -> web.Response:
        raw = request.match_info["name"]
        norm = normalize(raw)
        self._count(norm)
        if raw != norm or not request.path.endswith("/"):
            return self._moved(f"/simple/{norm}/")
        chosen = self._negotiate(request)
        if chosen is None:
            return self._not_acceptable()
        fmt, ctype = chosen
        p = self._entry(norm)
        if p is None:
            return self._not_found(json_body=False)
        fault = self._transient_fault("simple", norm, p.serial)
        if fault is not None:
            return fault
        body = self._simple_bytes(p, fmt)
        if norm == FAULT_MALFORMED:
            body = body[: len(body) // 2]  # cut mid-document: a parser must reject it rather than guess
        etag = _etag(norm, p.serial, fmt)
        headers = {
            "Content-Type": ctype,
            "Vary": "Accept",
            "ETag": etag,
            "Cache-Control": "max-age=600, public",
            "X-PyPI-Last-Serial": str(p.serial),
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    async def _handle_pypi_other(self, request: web.Request) -> web.Response:
        self._count(request.path)
        return self._not_found(json_body=True)

    async def _handle_json(self, request: web.Request) -> web.Response:
        raw = request.match_info["name"]
        version = request.match_info.get("version")
        norm = normalize(raw)
        self._count(norm)
        if not self.json_api:  # a mirror serving the simple API only
            return self._not_found(json_body=True)
        p = self._entry(norm)
        if p is None:
            return self._not_found(json_body=True)
        if raw != norm or request.path.endswith("/"):
            return self._moved(f"/pypi/{norm}/{version}/json" if version else f"/pypi/{norm}/json")
        fault = self._transient_fault("json", norm, p.serial)
        if fault is not None:
            return fault
        if norm == FAULT_MALFORMED:
            body = b'{"info": {"author": "", "name": "fault-malformed", "version": "1.0"}, "releases": {"1.0": [{"fil'
        elif version is None:
            body = self._api_bytes(p)
        else:
            body = self._version_body(p, version)
            if body is None:
                return self._not_found(json_body=True)
        etag = _etag(norm, p.serial, version or "")
        headers = {
            "Content-Type": JSON_CONTENT_TYPE,
            "ETag": etag,
            "Cache-Control": "max-age=900, public",
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "X-PyPI-Last-Serial",
            "X-PyPI-Last-Serial": str(p.serial),
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    def _version_body(self, p: _Proj, version: str) -> bytes | None:
        """``/pypi/<name>/<version>/json``: rare in a crawl, so parsing the project document here is fine."""
        doc = orjson.loads(self._api_bytes(p))
        files = doc["releases"].get(version)
        if files is None:
            return None
        info = doc["info"]
        info["version"] = version
        info["release_url"] = f"{self.url}project/{p.norm}/{version}/"
        info["yanked"] = bool(files) and all(f["yanked"] for f in files)
        info["yanked_reason"] = files[0]["yanked_reason"] if info["yanked"] else None
        key = _vkey(version)
        vulns = [v for v in doc["vulnerabilities"] if all(key < _vkey(f) for f in v["fixed_in"])]
        # The service dropped ``releases`` from the per-version document.
        out = {"info": info, "last_serial": doc["last_serial"], "urls": files, "vulnerabilities": vulns}
        return orjson.dumps(out, option=_SORT)

    async def _handle_packages(self, request: web.Request) -> web.Response:
        self._count("/packages/")
        filename = request.path.rsplit("/", 1)[-1]
        if not filename.endswith(".whl.metadata"):
            return self._not_found(json_body=False)  # distribution files themselves are not served
        parts = filename[: -len(".whl.metadata")].split("-")
        if len(parts) < 5:
            return self._not_found(json_body=False)
        norm, version = parts[0].replace("_", "-").lower(), parts[1]
        p = self._entry(norm)
        body = None if p is None else self._metadata_bytes(p, version)
        if p is None or body is None:
            return self._not_found(json_body=False)
        headers = {"Content-Type": "application/octet-stream", **self._serial_header(p.serial)}
        return web.Response(body=body, headers=headers)

    async def _handle_rss(self, request: web.Request) -> web.Response:
        self._count("rss")
        body = self._rss_updates() if request.path.endswith("updates.xml") else self._rss_packages()
        headers = {"Content-Type": "text/xml; charset=UTF-8", **self._serial_header()}
        return web.Response(body=body, headers=headers)


if pytest is not None:

    @pytest.fixture
    def fake_pypi() -> Iterator[FakePyPI]:
        """A served small index (50 projects, seed 1); import this into a conftest to use it."""
        with FakePyPI(projects=50, seed=1).serve() as fake:
            yield fake


# -------------------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.pypi", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size-profile", choices=sorted(_PROFILES), default="small")
    parser.add_argument("--simple-format", choices=("json", "html", "both"), default="both")
    parser.add_argument("--no-json-api", action="store_true", help="serve the simple API only, like a mirror")
    parser.add_argument("--first-serial", type=int, default=1000)
    parser.add_argument("--include-faults", action="store_true", help="list the fault projects in the index")
    parser.add_argument("--lazy", action="store_true", help="build templates on first use instead of before listening")
    args = parser.parse_args(argv)
    fake = FakePyPI(
        projects=args.projects,
        seed=args.seed,
        size_profile=args.size_profile,
        simple_format=args.simple_format,
        json_api=not args.no_json_api,
        first_serial=args.first_serial,
        include_faults=args.include_faults,
    )
    if not args.lazy:  # keeps template builds out of a benchmark's timings
        fake.prebuild()
    run_standalone(fake.make_app(), args.host, args.port, fake._bind)


if __name__ == "__main__":
    main()
