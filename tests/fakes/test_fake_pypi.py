"""Tests of the loopback PyPI fake itself (both APIs, negotiation, serials, faults, feeds, standalone mode)."""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.pypi import (
    FAULT_NAMES,
    SIMPLE_HTML_CONTENT_TYPE,
    SIMPLE_JSON_CONTENT_TYPE,
    FakePyPI,
    fake_pypi,  # noqa: F401  (fixture, used by name below)
    negotiate,
    normalize,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCEPT_JSON = {"Accept": SIMPLE_JSON_CONTENT_TYPE}
ACCEPT_HTML = {"Accept": "text/html"}
SERIAL_COMMENT = re.compile(r"<!--SERIAL (\d+)-->\s*$")
INFO_KEYS = {
    "author",
    "author_email",
    "bugtrack_url",
    "classifiers",
    "description",
    "description_content_type",
    "docs_url",
    "download_url",
    "downloads",
    "dynamic",
    "home_page",
    "keywords",
    "license",
    "license_expression",
    "license_files",
    "maintainer",
    "maintainer_email",
    "name",
    "package_url",
    "platform",
    "project_url",
    "project_urls",
    "provides_extra",
    "release_url",
    "requires_dist",
    "requires_python",
    "summary",
    "version",
    "yanked",
    "yanked_reason",
}
FILE_KEYS = {
    "comment_text",
    "digests",
    "downloads",
    "filename",
    "has_sig",
    "md5_digest",
    "packagetype",
    "python_version",
    "requires_python",
    "size",
    "upload_time",
    "upload_time_iso_8601",
    "url",
    "yanked",
    "yanked_reason",
}
PEP691_FILE_KEYS = {
    "core-metadata",
    "data-dist-info-metadata",
    "filename",
    "hashes",
    "provenance",
    "requires-python",
    "size",
    "upload-time",
    "url",
    "yanked",
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # surface the 301 itself


_NO_REDIRECT = urllib.request.build_opener(_NoRedirect)


def get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 10, follow: bool = True
) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    opener = urllib.request.urlopen if follow else _NO_REDIRECT.open
    try:
        with opener(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def get_json(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, Any, Any]:
    status, h, body = get(url, headers)
    return status, h, json.loads(body)


@pytest.fixture(scope="module")
def shared() -> Iterator[FakePyPI]:
    """Read-only tests share one server."""
    with FakePyPI(projects=120, seed=3).serve() as fake:
        yield fake


@pytest.fixture
def fresh() -> Iterator[FakePyPI]:
    """Tests that mutate state or consume one-shot faults get their own."""
    with FakePyPI(projects=30, seed=5, include_faults=True).serve() as fake:
        yield fake


def find(fake: FakePyPI, pred: Any) -> tuple[str, dict[str, Any]]:
    """First generated project whose JSON API document satisfies ``pred`` (no HTTP)."""
    for name in fake.project_names():
        doc = fake.project_json(name)
        assert doc is not None
        if pred(doc):
            return name, doc
    raise AssertionError("no project matches")


def all_files(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [f for files in doc["releases"].values() for f in files]


# ------------------------------------------------------------------------------------------ names


def test_urls(shared: FakePyPI) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", shared.url)
    assert shared.simple_url == shared.url + "simple/"


def test_names_mixed_and_deterministic(shared: FakePyPI) -> None:
    names = shared.project_names()
    assert len(names) == 120
    norms = [normalize(n) for n in names]
    assert len(set(norms)) == 120  # distinct projects even after normalization
    assert sum(n != normalize(n) for n in names) >= 20
    assert any(re.search(r"[A-Z]", n) for n in names) and any("." in n for n in names) and any("_" in n for n in names)
    assert all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", n) for n in names)
    assert not set(norms) & set(FAULT_NAMES)
    assert FakePyPI(projects=120, seed=3).project_names() == names
    assert FakePyPI(projects=120, seed=4).project_names() != names
    assert normalize("Foo_Bar.baz") == "foo-bar-baz" == FakePyPI.normalize("foo__bar--BAZ")


# ------------------------------------------------------------------------------------------ simple API


@pytest.mark.parametrize(
    ("accept", "allow_json", "allow_html", "expected"),
    [
        ("", True, True, "html"),
        ("*/*", True, True, "html"),
        ("*/*", True, False, "json"),
        (SIMPLE_JSON_CONTENT_TYPE, True, True, "json"),
        ("application/vnd.pypi.simple.latest+json", True, True, "json"),
        (f"{SIMPLE_JSON_CONTENT_TYPE}, {SIMPLE_HTML_CONTENT_TYPE};q=0.1, text/html;q=0.01", True, True, "json"),
        (f"{SIMPLE_JSON_CONTENT_TYPE};q=0.2, text/html", True, True, "html"),
        (f"{SIMPLE_JSON_CONTENT_TYPE}, text/html;q=0.01", False, True, "html"),
        ("text/html", True, False, None),
        (SIMPLE_JSON_CONTENT_TYPE, False, True, None),
        ("application/json", True, True, None),
        (f"{SIMPLE_JSON_CONTENT_TYPE};q=0", True, False, None),
        ("application/*", True, False, "json"),
    ],
)
def test_negotiate(accept: str, allow_json: bool, allow_html: bool, expected: str | None) -> None:
    chosen = negotiate(accept, allow_json, allow_html)
    assert (chosen[0] if chosen else None) == expected


def test_index_html_and_json(shared: FakePyPI) -> None:
    status, headers, body = get(shared.simple_url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = body.decode()
    links = re.findall(r'<a href="/simple/([^"]+)/">([^<]+)</a>', text)
    assert sorted(d for _, d in links) == sorted(shared.project_names())
    assert all(n == normalize(d) for n, d in links)
    m = SERIAL_COMMENT.search(text)
    assert m is not None and int(m.group(1)) == shared.last_serial == int(headers["X-PyPI-Last-Serial"])

    status, headers, doc = get_json(shared.simple_url, ACCEPT_JSON)
    assert status == 200 and headers["Content-Type"] == SIMPLE_JSON_CONTENT_TYPE
    assert doc["meta"] == {"api-version": "1.3", "_last-serial": shared.last_serial}
    assert int(headers["X-PyPI-Last-Serial"]) == shared.last_serial
    assert [p["name"] for p in doc["projects"]] == [d for _, d in links]
    serials = {p["name"]: p["_last-serial"] for p in doc["projects"]}
    assert all(serials[n] == shared.serial_of(n) for n in shared.project_names())
    assert max(serials.values()) == shared.last_serial
    assert not {normalize(n) for n in serials} & set(FAULT_NAMES)  # faults are listed only on request

    # The PEP 691 URL parameter and the "latest" alias; an unsupported type is refused.
    status, headers, _ = get(shared.simple_url + "?format=" + urllib.parse.quote(SIMPLE_JSON_CONTENT_TYPE, safe=""))
    assert status == 200 and headers["Content-Type"] == SIMPLE_JSON_CONTENT_TYPE
    status, headers, _ = get(shared.simple_url, {"Accept": "application/vnd.pypi.simple.latest+json"})
    assert headers["Content-Type"] == SIMPLE_JSON_CONTENT_TYPE
    status, headers, _ = get(shared.simple_url, {"Accept": SIMPLE_HTML_CONTENT_TYPE})
    assert status == 200 and headers["Content-Type"] == SIMPLE_HTML_CONTENT_TYPE
    status, headers, _ = get(shared.simple_url, {"Accept": "application/json"})
    assert status == 406 and "X-PyPI-Last-Serial" in headers
    status, headers, _ = get(shared.url + "simple", follow=False)
    assert status == 301 and headers["Location"] == "/simple/"


@pytest.mark.parametrize("simple_format", ["json", "html"])
def test_single_format_index(simple_format: str) -> None:
    with FakePyPI(projects=5, simple_format=simple_format).serve() as fake:  # type: ignore[arg-type]
        name = normalize(fake.project_names()[0])
        for url in (fake.simple_url, fake.simple_url + name + "/"):
            status, headers, _ = get(url)  # no Accept: whatever the server has
            wanted = SIMPLE_JSON_CONTENT_TYPE if simple_format == "json" else "text/html"
            assert status == 200 and headers["Content-Type"].startswith(wanted)
            other = ACCEPT_HTML if simple_format == "json" else ACCEPT_JSON
            assert get(url, other)[0] == 406
            both = {"Accept": f"{SIMPLE_JSON_CONTENT_TYPE}, text/html;q=0.5"}
            assert get(url, both)[1]["Content-Type"].startswith(wanted)


def test_project_page_json(shared: FakePyPI) -> None:
    name = next(n for n in shared.project_names() if n != normalize(n))
    norm = normalize(name)
    status, headers, page = get_json(f"{shared.simple_url}{norm}/", ACCEPT_JSON)
    assert status == 200 and headers["Content-Type"] == SIMPLE_JSON_CONTENT_TYPE
    assert headers["ETag"] and headers["Vary"] == "Accept"
    assert set(page) == {"alternate-locations", "files", "meta", "name", "versions"}
    assert page["name"] == norm and page["meta"]["api-version"] == "1.3"
    assert page["meta"]["_last-serial"] == int(headers["X-PyPI-Last-Serial"]) == shared.serial_of(name)
    doc = shared.project_json(name)
    assert doc is not None and sorted(page["versions"]) == sorted(doc["releases"])
    assert [f["filename"] for f in page["files"]] == [
        f["filename"] for v in page["versions"] for f in doc["releases"][v]
    ]  # upload order
    for f in page["files"]:
        assert set(f) == PEP691_FILE_KEYS
        assert f["url"].startswith(shared.url + "packages/") and f["url"].endswith("/" + f["filename"])
        assert re.fullmatch(r"[0-9a-f]{64}", f["hashes"]["sha256"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", f["upload-time"])
        assert isinstance(f["size"], int) and f["size"] > 0
        assert f["core-metadata"] == f["data-dist-info-metadata"]
        assert bool(f["core-metadata"]) == f["filename"].endswith(".whl")
    status, _, again = get(f"{shared.simple_url}{norm}/", {**ACCEPT_JSON, "If-None-Match": headers["ETag"]})
    assert status == 304 and again == b""


def test_project_page_html(shared: FakePyPI) -> None:
    name, doc = find(shared, lambda d: d["info"]["requires_python"] and ">" in d["info"]["requires_python"])
    norm = normalize(name)
    status, headers, body = get(f"{shared.simple_url}{norm}/", ACCEPT_HTML)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = body.decode()
    assert f"<title>Links for {name}</title>" in text
    assert '<meta name="pypi:repository-version" content="1.3">' in text
    m = SERIAL_COMMENT.search(text)
    assert m is not None and int(m.group(1)) == int(headers["X-PyPI-Last-Serial"]) == doc["last_serial"]
    anchors = re.findall(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})"([^>]*)>([^<]+)</a>', text)
    assert len(anchors) == len(all_files(doc))
    assert 'data-requires-python="&gt;' in text  # escaped, as PEP 503 requires
    for url, _, attrs, filename in anchors:
        assert url.endswith("/" + filename)
        assert ("data-core-metadata=" in attrs) == filename.endswith(".whl")


def test_serials_consistent_across_apis(shared: FakePyPI) -> None:
    _, _, index = get_json(shared.simple_url, ACCEPT_JSON)
    listed = {normalize(p["name"]): p["_last-serial"] for p in index["projects"]}
    for name in shared.project_names()[:8]:
        norm = normalize(name)
        status, headers, doc = get_json(f"{shared.url}pypi/{norm}/json")
        assert status == 200
        _, sheaders, page = get_json(f"{shared.simple_url}{norm}/", ACCEPT_JSON)
        serial = doc["last_serial"]
        assert serial == int(headers["X-PyPI-Last-Serial"]) == int(sheaders["X-PyPI-Last-Serial"])
        assert serial == page["meta"]["_last-serial"] == listed[norm] <= shared.last_serial


def test_redirects_to_normalized(shared: FakePyPI) -> None:
    name = next(n for n in shared.project_names() if n != normalize(n))
    norm = normalize(name)
    cases = {
        f"pypi/{name}/json": f"/pypi/{norm}/json",
        f"pypi/{name}/json/": f"/pypi/{norm}/json",
        f"pypi/{norm}/json/": f"/pypi/{norm}/json",
        f"simple/{name}/": f"/simple/{norm}/",
        f"simple/{norm}": f"/simple/{norm}/",
        f"simple/{name}": f"/simple/{norm}/",
    }
    doc = shared.project_json(name)
    assert doc is not None
    version = doc["info"]["version"]
    cases[f"pypi/{name}/{version}/json/"] = f"/pypi/{norm}/{version}/json"
    for path, location in cases.items():
        status, headers, body = get(shared.url + path, follow=False)
        assert status == 301 and headers["Location"] == location, path
        assert b"301 Moved Permanently" in body
        assert get(shared.url + path)[0] == 200  # following it lands on the document


def test_not_found(shared: FakePyPI) -> None:
    for path in ("pypi/no-such-project/json", "pypi/No_Such.Project/json/", "pypi/nope/1.0/json"):
        status, headers, body = get(shared.url + path)
        assert status == 404 and json.loads(body) == {"message": "Not Found"}, path
        assert headers["Content-Type"] == "application/json" and "X-PyPI-Last-Serial" in headers
    assert get(shared.simple_url + "no-such-project/")[0] == 404
    norm = normalize(shared.project_names()[0])
    assert get(f"{shared.url}pypi/{norm}/99.99.99/json")[0] == 404


# ------------------------------------------------------------------------------------------ JSON API


def test_json_api_current_schema(shared: FakePyPI) -> None:
    name, _ = find(shared, lambda d: "ownership" in d and d["vulnerabilities"])
    norm = normalize(name)
    status, headers, doc = get_json(f"{shared.url}pypi/{norm}/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert re.fullmatch(r'"[A-Za-z0-9+/]{22}"', headers["ETag"])
    assert set(doc) == {"info", "last_serial", "ownership", "releases", "urls", "vulnerabilities"}
    info = doc["info"]
    assert set(info) == INFO_KEYS
    assert info["name"] == name and doc["last_serial"] == int(headers["X-PyPI-Last-Serial"])
    assert info["package_url"] == f"{shared.url}project/{norm}/"
    assert info["release_url"] == f"{shared.url}project/{norm}/{info['version']}/"
    assert info["downloads"] == {"last_day": -1, "last_month": -1, "last_week": -1}
    assert set(doc["ownership"]) == {"organization", "roles"} and doc["ownership"]["roles"][0]["role"] == "Owner"
    assert list(doc["releases"]) == sorted(doc["releases"])  # keys sorted like the service's
    assert doc["urls"] == doc["releases"][info["version"]]
    for f in all_files(doc):
        assert set(f) == FILE_KEYS
        assert f["packagetype"] in ("sdist", "bdist_wheel") and f["downloads"] == -1
        assert f["md5_digest"] == f["digests"]["md5"] and set(f["digests"]) == {"blake2b_256", "md5", "sha256"}
        assert f["upload_time"] == f["upload_time_iso_8601"][:19]
        b2 = f["digests"]["blake2b_256"]
        assert f["url"] == f"{shared.url}packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{f['filename']}"
    assert 1 <= len(doc["vulnerabilities"]) <= 3
    for v in doc["vulnerabilities"]:
        assert set(v) == {"aliases", "details", "fixed_in", "id", "link", "source", "summary", "withdrawn"}
        assert v["fixed_in"][0] in doc["releases"] and v["source"] == "osv" and v["id"] in v["link"]
    ids = [v["id"] for v in doc["vulnerabilities"]]
    other, _ = find(shared, lambda d: d["vulnerabilities"] and d["info"]["name"] != name)
    other_doc = shared.project_json(other)
    assert other_doc is not None and not set(ids) & {v["id"] for v in other_doc["vulnerabilities"]}


def test_json_api_old_schema(shared: FakePyPI) -> None:
    name, _ = find(shared, lambda d: "ownership" not in d)
    status, _, doc = get_json(f"{shared.url}pypi/{normalize(name)}/json")
    assert status == 200 and set(doc) == {"info", "last_serial", "releases", "urls", "vulnerabilities"}
    info = doc["info"]
    assert set(info) == INFO_KEYS - {"license_expression", "license_files", "description_content_type"}
    assert info["project_urls"] is None and info["home_page"] is not None
    docs = [shared.project_json(n) for n in shared.project_names()]
    old = sum("ownership" not in d for d in docs if d)
    assert 0.03 * len(docs) <= old <= 0.25 * len(docs)


def test_field_variety(shared: FakePyPI) -> None:
    docs = [d for d in (shared.project_json(n) for n in shared.project_names()) if d]
    infos = [d["info"] for d in docs]
    assert any(i.get("license_expression") and i["license"] is None for i in infos)  # PEP 639
    assert any(i.get("license") == "" and "License :: OSI Approved :: MIT License" in i["classifiers"] for i in infos)
    assert any(i["license"] == "UNKNOWN" and i["author"] == "UNKNOWN" for i in infos)
    github = [
        i
        for i in infos
        if any(
            k in (i["project_urls"] or {})
            and re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", i["project_urls"][k])
            for k in ("Source", "Repository", "Source Code")
        )
    ]
    assert len(github) >= len(infos) // 3
    assert any(i["requires_dist"] for i in infos) and any(i["requires_dist"] is None for i in infos)
    # Dependencies name other projects of the same index.
    names = {normalize(n) for n in shared.project_names()}
    dep = next(r for i in infos for r in i["requires_dist"] or ())
    assert normalize(re.split(r"[\[<>=!~; ]", dep)[0]) in names
    assert any(re.search(r"\d(a|b|rc)\d+$", v) for d in docs for v in d["releases"])  # pre-releases
    assert any(f["packagetype"] == "bdist_wheel" and "manylinux" in f["filename"] for d in docs for f in all_files(d))
    assert any(not files for d in docs for files in d["releases"].values())  # registered without uploads
    assert any(len(d["releases"]) >= 5 for d in docs) and any(len(d["releases"]) == 1 for d in docs)


def test_latest_version_skips_pre_and_yanked(shared: FakePyPI) -> None:
    newest_is_pre = 0
    for name in shared.project_names():
        doc = shared.project_json(name)
        assert doc is not None
        uploaded = {v: min(f["upload_time_iso_8601"] for f in fs) for v, fs in doc["releases"].items() if fs}
        usable = [
            v
            for v in uploaded
            if not all(f["yanked"] for f in doc["releases"][v]) and not re.search(r"\d(a|b|rc)\d+$", v)
        ]
        if usable:  # the newest upload that is neither yanked nor a pre-release
            assert doc["info"]["version"] == max(usable, key=uploaded.__getitem__)
            assert doc["info"]["yanked"] is False and doc["info"]["yanked_reason"] is None
        if uploaded:  # (some old projects registered releases but never uploaded a file)
            newest_is_pre += bool(re.search(r"(a|b|rc)\d+$", max(uploaded, key=uploaded.__getitem__)))
    assert newest_is_pre  # some projects' newest upload is a release candidate


def test_yanked_with_and_without_reason(shared: FakePyPI) -> None:
    def yanked(d: Mapping[str, Any], with_reason: bool) -> bool:
        return any(f["yanked"] and bool(f["yanked_reason"]) == with_reason for f in all_files(d))

    for with_reason in (True, False):
        name, doc = find(shared, lambda d, w=with_reason: yanked(d, w))
        norm = normalize(name)
        f = next(f for f in all_files(doc) if f["yanked"] and bool(f["yanked_reason"]) == with_reason)
        _, _, page = get_json(f"{shared.simple_url}{norm}/", ACCEPT_JSON)
        entry = next(e for e in page["files"] if e["filename"] == f["filename"])
        assert entry["yanked"] == (f["yanked_reason"] if with_reason else True)
        text = get(f"{shared.simple_url}{norm}/", ACCEPT_HTML)[2].decode()
        anchor = next(line for line in text.splitlines() if f">{f['filename']}</a>" in line)
        expected = 'data-yanked=""' if not with_reason else 'data-yanked="' + f["yanked_reason"].replace("<", "&lt;")
        assert expected.replace(">", "&gt;") in anchor or expected in anchor


def test_version_json(shared: FakePyPI) -> None:
    name, doc = find(shared, lambda d: len(d["releases"]) >= 3 and d["vulnerabilities"])
    norm = normalize(name)
    first = sorted(doc["releases"], key=lambda v: doc["releases"][v][0]["upload_time"] if doc["releases"][v] else "")
    for version in (doc["info"]["version"], first[0]):
        status, headers, vdoc = get_json(f"{shared.url}pypi/{norm}/{version}/json")
        assert status == 200 and set(vdoc) == {"info", "last_serial", "urls", "vulnerabilities"}
        assert vdoc["info"]["version"] == version and vdoc["urls"] == doc["releases"][version]
        assert vdoc["last_serial"] == doc["last_serial"] == int(headers["X-PyPI-Last-Serial"])
        assert all(version not in v["fixed_in"] for v in vdoc["vulnerabilities"])


def test_core_metadata(shared: FakePyPI) -> None:
    name, doc = find(shared, lambda d: d["info"]["requires_dist"] and d["info"]["classifiers"])
    norm = normalize(name)
    _, _, page = get_json(f"{shared.simple_url}{norm}/", ACCEPT_JSON)
    wheels = [f for f in page["files"] if f["core-metadata"]]
    assert wheels
    for f in wheels[-2:]:
        status, _, body = get(f["url"] + ".metadata")
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == f["core-metadata"]["sha256"]  # announced hash matches
        msg = email.parser.BytesParser().parsebytes(body)
        version = f["filename"].split("-")[1]
        assert msg["Metadata-Version"] in ("2.1", "2.4") and msg["Name"] == name and msg["Version"] == version
        info = doc["info"]
        assert msg.get_all("Requires-Dist") == info["requires_dist"]
        assert msg.get_all("Classifier") == info["classifiers"]
        assert msg["Summary"] == info["summary"]
        if info["requires_python"]:
            assert msg["Requires-Python"] == info["requires_python"]
        for label, url in (info["project_urls"] or {}).items():
            assert f"{label}, {url}" in msg.get_all("Project-URL")
        assert name in msg.get_payload()  # the description is the body
    sdist = next(f for f in page["files"] if not f["core-metadata"])
    assert get(sdist["url"] + ".metadata")[0] == 404
    assert get(wheels[0]["url"])[0] == 404  # distribution files themselves are not served
    _, _, html_page = get(f"{shared.simple_url}{norm}/", ACCEPT_HTML)
    assert f'data-core-metadata="sha256={wheels[0]["core-metadata"]["sha256"]}"' in html_page.decode()


def test_license_expression_metadata_version(shared: FakePyPI) -> None:
    name, doc = find(shared, lambda d: d["info"].get("license_expression") and d["urls"])
    wheel = next((f for f in doc["urls"] if f["filename"].endswith(".whl")), None)
    if wheel is None:
        pytest.skip("no wheel in that project's latest release")
    body = shared.core_metadata(name, doc["info"]["version"])
    assert body is not None
    msg = email.parser.BytesParser().parsebytes(body)
    assert msg["Metadata-Version"] == "2.4" and msg["License-Expression"] == doc["info"]["license_expression"]


# ------------------------------------------------------------------------------------------ feeds


def test_rss_feeds(fresh: FakePyPI) -> None:
    status, headers, body = get(fresh.url + "rss/updates.xml")
    assert status == 200 and headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(body)
    assert root.tag == "rss" and root.get("version") == "0.91"
    items = root.findall("./channel/item")
    assert len(items) == 30  # fewer projects than the feed's 40
    for item in items:
        assert item.findtext("title") and item.findtext("pubDate")
        assert item.findtext("link", "").startswith(fresh.url + "project/")

    serial = fresh.publish("Brand_New.Thing")
    existing = fresh.project_names()[3]
    fresh.publish(existing)
    root = ET.fromstring(get(fresh.url + "rss/updates.xml")[2])
    items = root.findall("./channel/item")
    assert len(items) == 32 and items[0].findtext("title", "").startswith(existing + " ")
    assert items[1].findtext("title") == "Brand_New.Thing 0.1.0"
    assert items[1].findtext("link") == f"{fresh.url}project/brand-new-thing/0.1.0/"

    root = ET.fromstring(get(fresh.url + "rss/packages.xml")[2])
    assert root.get("version") == "2.0"
    items = root.findall("./channel/item")
    assert items[0].findtext("title") == "Brand_New.Thing added to PyPI"
    assert items[0].findtext("guid") == items[0].findtext("link") == f"{fresh.url}project/brand-new-thing/"
    assert len(items) == 31 and serial > 0
    assert fresh.requests["rss"] == 3


# ------------------------------------------------------------------------------------------ mutation


def test_publish_delete_rename(fresh: FakePyPI) -> None:
    url = fresh.url
    name = fresh.project_names()[7]
    norm = normalize(name)
    before = fresh.last_serial
    old = fresh.project_json(name)
    assert old is not None

    serial = fresh.publish(name)
    assert serial > before and fresh.last_serial == serial == fresh.serial_of(name)
    _, headers, doc = get_json(f"{url}pypi/{norm}/json")
    assert doc["last_serial"] == serial == int(headers["X-PyPI-Last-Serial"])
    new_versions = set(doc["releases"]) - set(old["releases"])
    assert len(new_versions) == 1
    (version,) = new_versions
    assert doc["info"]["version"] == version and doc["urls"] == doc["releases"][version]
    assert {f["packagetype"] for f in doc["urls"]} == {"sdist", "bdist_wheel"}
    assert all(f["url"].startswith(url + "packages/") for f in doc["urls"])
    assert doc["info"]["release_url"] == f"{url}project/{norm}/{version}/"
    _, sheaders, page = get_json(f"{fresh.simple_url}{norm}/", ACCEPT_JSON)
    assert int(sheaders["X-PyPI-Last-Serial"]) == serial
    assert page["meta"]["_last-serial"] == serial and version in page["versions"]
    wheel = next(f for f in page["files"] if f["filename"].endswith(f"-{version}-py3-none-any.whl"))
    meta = get(wheel["url"] + ".metadata")[2]
    assert hashlib.sha256(meta).hexdigest() == wheel["core-metadata"]["sha256"]
    _, iheaders, index = get_json(fresh.simple_url, ACCEPT_JSON)
    assert index["meta"]["_last-serial"] == serial == int(iheaders["X-PyPI-Last-Serial"])
    assert {p["name"]: p["_last-serial"] for p in index["projects"]}[name] == serial
    with pytest.raises(ValueError):
        fresh.publish(name, version)

    gone = fresh.project_names()[8]
    dserial = fresh.delete(gone)
    assert dserial == serial + 1 == fresh.last_serial
    assert get(f"{url}pypi/{normalize(gone)}/json")[0] == 404
    assert get(f"{fresh.simple_url}{normalize(gone)}/")[0] == 404
    _, _, index = get_json(fresh.simple_url, ACCEPT_JSON)
    assert gone not in {p["name"] for p in index["projects"]} and index["meta"]["_last-serial"] == dserial
    with pytest.raises(KeyError):
        fresh.delete(gone)

    fresh.publish("zz-new-project")
    _, _, index = get_json(fresh.simple_url, ACCEPT_JSON)
    assert "zz-new-project" in {p["name"] for p in index["projects"]}
    created = fresh.project_json("ZZ_New.Project")
    assert (
        created is not None and list(created["releases"]) == ["0.1.0"] and created["info"]["name"] == "zz-new-project"
    )

    rserial = fresh.rename_display(name, name.upper())
    assert rserial == fresh.last_serial and fresh.project_json(norm)["info"]["name"] == name.upper()  # type: ignore[index]
    plain = fresh.project_names()[9]
    fresh.rename_display(plain, plain.upper())
    assert get_json(f"{url}pypi/{normalize(plain)}/json")[2]["info"]["name"] == plain.upper()
    assert f">{plain.upper()}</a>" in get(fresh.simple_url)[2].decode()
    with pytest.raises(ValueError):
        fresh.rename_display(plain, "something-else")


def test_json_api_disabled_mirror() -> None:
    with FakePyPI(projects=5, json_api=False).serve() as fake:
        norm = normalize(fake.project_names()[0])
        for path in (f"pypi/{norm}/json", f"pypi/{norm}/1.0/json", "pypi/fault-huge/json", "pypi/"):
            status, _, body = get(fake.url + path)
            assert status == 404 and json.loads(body) == {"message": "Not Found"}
        assert get(f"{fake.simple_url}{norm}/", ACCEPT_JSON)[0] == 200


# ------------------------------------------------------------------------------------------ faults


def test_fault_names_and_index(fresh: FakePyPI) -> None:
    assert FakePyPI.fault_names() == FAULT_NAMES and len(FAULT_NAMES) == 7
    _, _, index = get_json(fresh.simple_url, ACCEPT_JSON)
    listed = {p["name"] for p in index["projects"]}
    assert set(FAULT_NAMES) <= listed and len(listed) == 30 + len(FAULT_NAMES)
    assert index["meta"]["_last-serial"] == max(p["_last-serial"] for p in index["projects"]) == fresh.last_serial


def test_fault_not_found(fresh: FakePyPI) -> None:
    assert get(fresh.url + "pypi/fault-not-found/json")[0] == 404
    assert get(fresh.simple_url + "fault-not-found/", ACCEPT_JSON)[0] == 404


def test_fault_malformed(fresh: FakePyPI) -> None:
    for url, headers in (
        (fresh.url + "pypi/fault-malformed/json", {}),
        (fresh.simple_url + "fault-malformed/", ACCEPT_JSON),
    ):
        status, _, body = get(url, headers)
        assert status == 200 and body
        with pytest.raises(ValueError):
            json.loads(body)


def test_fault_rate_limited_twice_then_ok(fresh: FakePyPI) -> None:
    for url in (fresh.url + "pypi/fault-rate-limited/json", fresh.simple_url + "fault-rate-limited/"):
        for _ in range(2):
            status, headers, _ = get(url, ACCEPT_JSON)
            assert status == 429 and headers["Retry-After"] == "1"
        status, _, body = get(url, ACCEPT_JSON)
        assert status == 200 and json.loads(body)
    fresh.reset_faults()
    assert get(fresh.url + "pypi/fault-rate-limited/json")[0] == 429


def test_fault_unavailable_once(fresh: FakePyPI) -> None:
    status, headers, _ = get(fresh.url + "pypi/fault-unavailable/json")
    assert status == 503 and headers["Retry-After"] == "1"
    status, _, body = get(fresh.url + "pypi/fault-unavailable/json")
    assert status == 200 and json.loads(body)["info"]["name"] == "fault-unavailable"
    assert get(fresh.simple_url + "fault-unavailable/")[0] == 503
    assert get(fresh.simple_url + "fault-unavailable/")[0] == 200


def test_fault_huge(fresh: FakePyPI) -> None:
    status, headers, body = get(fresh.url + "pypi/fault-huge/json", timeout=30)
    assert status == 200 and len(body) > 1_000_000 and int(headers["Content-Length"]) == len(body)
    doc = orjson.loads(body)
    assert len(doc["releases"]) == 5_000 and doc["info"]["version"] in doc["releases"]
    status, _, page = get(fresh.simple_url + "fault-huge/", ACCEPT_JSON, timeout=30)
    assert status == 200 and len(orjson.loads(page)["versions"]) == 5_000


def test_fault_unknown_fields(fresh: FakePyPI) -> None:
    status, _, doc = get_json(fresh.url + "pypi/fault-unknown-fields/json")
    assert status == 200
    info = doc["info"]
    for key in ("author", "author_email", "license", "home_page", "summary", "description", "platform"):
        assert info[key] == "UNKNOWN", key
    for key in ("keywords", "maintainer", "maintainer_email", "requires_python", "classifiers"):
        assert not info[key], key
    assert info["requires_dist"] is None and info["project_urls"] is None
    assert doc["releases"] and all(files == [] for files in doc["releases"].values()) and doc["urls"] == []
    _, _, page = get_json(fresh.simple_url + "fault-unknown-fields/", ACCEPT_JSON)
    assert page["files"] == [] and sorted(page["versions"]) == sorted(doc["releases"])


def test_fault_yanked_only(fresh: FakePyPI) -> None:
    _, _, doc = get_json(fresh.url + "pypi/fault-yanked-only/json")
    files = all_files(doc)
    assert files and all(f["yanked"] for f in files)
    reasons = {v: {f["yanked_reason"] for f in fs} for v, fs in doc["releases"].items()}
    assert sum(1 for r in reasons.values() if r != {None}) == 1
    assert doc["info"]["yanked"] is True and doc["info"]["version"] in doc["releases"]
    _, _, page = get_json(fresh.simple_url + "fault-yanked-only/", ACCEPT_JSON)
    assert all(f["yanked"] for f in page["files"])
    assert any(isinstance(f["yanked"], str) for f in page["files"])


def test_request_log(fresh: FakePyPI) -> None:
    name = next(n for n in fresh.project_names() if n != normalize(n))
    norm = normalize(name)
    get(f"{fresh.url}pypi/{name}/json")  # 301 + 200
    get(f"{fresh.simple_url}{norm}/")
    get(fresh.simple_url)
    get(fresh.url + "rss/packages.xml")
    assert fresh.requests[norm] == 3 and fresh.requests["/simple/"] == 1 and fresh.requests["rss"] == 1
    assert fresh.total_requests == 5
    fresh.reset_counters()
    assert fresh.total_requests == 0 and not fresh.requests


def test_pytest_fixture(fake_pypi: FakePyPI) -> None:  # noqa: F811
    assert get(fake_pypi.simple_url)[0] == 200


# ------------------------------------------------------------------------------------------ data


def test_determinism() -> None:
    a, b, c = FakePyPI(projects=40, seed=7), FakePyPI(projects=40, seed=7), FakePyPI(projects=40, seed=8)
    names = a.project_names()[::3]
    assert [a.project_json_bytes(n) for n in names] == [b.project_json_bytes(n) for n in names]
    assert [a.simple_page_bytes(n, "html") for n in names] == [b.simple_page_bytes(n, "html") for n in names]
    assert a.index_bytes("json") == b.index_bytes("json")
    assert a.project_names() != c.project_names()
    assert a.project_json_bytes(names[0]) != c.project_json_bytes(c.project_names()[0])


def test_serial_bounds() -> None:
    fake = FakePyPI(projects=50, first_serial=5_000_000)
    serials = [fake.serial_of(n) for n in fake.project_names()]
    assert len(set(serials)) == 50 and min(serials) >= 5_000_000  # type: ignore[type-var]
    assert fake.last_serial == max(serials)  # type: ignore[type-var]


def test_realistic_size_distribution() -> None:
    fake = FakePyPI(projects=100_000, seed=1, size_profile="realistic")
    names = fake.project_names()
    sizes = [fake.body_size(n) for n in names[::50]]
    assert len(sizes) == 2000
    assert 8_000 <= statistics.median(sizes) <= 12_000
    assert any(fake.body_size(n) > 1_000_000 for n in names[:10_000])


# ------------------------------------------------------------------------------------------ standalone


def test_standalone_process() -> None:
    cmd = [sys.executable, "-m", "tests.fakes.pypi", "--host", "127.0.0.1", "--port", "0", "--projects", "20"]
    cmd += ["--seed", "2", "--size-profile", "realistic", "--lazy"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"url", "simple_url", "pid"} and info["pid"] == proc.pid
        assert info["url"].startswith("http://127.0.0.1:") and info["simple_url"] == info["url"] + "simple/"
        status, _, index = get_json(info["simple_url"], ACCEPT_JSON)
        assert status == 200 and len(index["projects"]) == 20
        norm = normalize(index["projects"][0]["name"])
        assert get(f"{info['url']}pypi/{norm}/json")[0] == 200
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_only_loopback() -> None:
    with pytest.raises(ValueError), FakePyPI(projects=1).serve(host="0.0.0.0"):
        pass


# ------------------------------------------------------------------------------------------ load (opt-in)


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FAKE_PYPI_LOADTEST"), reason="set FAKE_PYPI_LOADTEST=<count> to run")
def test_load_realistic() -> None:
    """Fetch every JSON API document of N realistic projects from a standalone fake; check its RSS and CPU."""
    import asyncio

    import aiohttp

    count = int(os.environ["FAKE_PYPI_LOADTEST"])
    cmd = [sys.executable, "-m", "tests.fakes.pypi", "--projects", str(count), "--size-profile", "realistic"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())

        async def crawl(paths: list[str], headers: Mapping[str, str]) -> tuple[int, int, list[int]]:
            queue = iter(paths)
            total, errors, sizes = 0, 0, []
            conn = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(info["url"], connector=conn, headers=dict(headers)) as session:

                async def worker() -> None:
                    nonlocal total, errors
                    for path in queue:
                        async with session.get(path, allow_redirects=False) as resp:
                            body = await resp.read()
                            errors += resp.status != 200
                            total += len(body)
                            sizes.append(len(body))

                await asyncio.gather(*(worker() for _ in range(64)))
            return total, errors, sizes

        local = FakePyPI(projects=count, size_profile="realistic")
        norms = [normalize(n) for n in local.project_names()]
        for label, paths, headers in (
            ("JSON API", [f"/pypi/{n}/json" for n in norms], {}),
            ("simple JSON", [f"/simple/{n}/" for n in norms], ACCEPT_JSON),
        ):
            cpu0 = _proc_cpu_seconds(proc.pid)
            start = time.monotonic()
            total, errors, sizes = asyncio.run(crawl(paths, headers))
            wall = time.monotonic() - start
            cpu = _proc_cpu_seconds(proc.pid) - cpu0
            print(
                f"\n{label}: {count} documents, {total / 1e6:.0f} MB in {wall:.1f} s ({count / wall:.0f} req/s); "
                f"fake CPU {cpu:.1f} s = {cpu / count * 1e3:.3f} ms/request; "
                f"median body {statistics.median(sizes) / 1e3:.1f} KB"
            )
            assert errors == 0

        # Bodies of 9-11 KB only: the per-request cost the brief bounds.
        tenk = [f"/pypi/{n}/json" for n in norms[:50_000] if 9_000 <= local.body_size(n) <= 11_000][:20_000]
        cpu0 = _proc_cpu_seconds(proc.pid)
        start = time.monotonic()
        total, errors, sizes = asyncio.run(crawl(tenk, {}))
        wall = time.monotonic() - start
        cpu = _proc_cpu_seconds(proc.pid) - cpu0
        rss = _proc_peak_rss_mb(proc.pid)
        print(
            f"{len(tenk)} JSON bodies of 9-11 KB in {wall:.1f} s ({len(tenk) / wall:.0f} req/s); "
            f"fake CPU {cpu / len(tenk) * 1e3:.3f} ms/request; fake peak RSS {rss:.0f} MB"
        )
        assert errors == 0 and len(tenk) > 1000
        assert cpu / len(tenk) < 0.5e-3
        assert rss < 300
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
