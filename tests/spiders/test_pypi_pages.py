"""The PyPI spider's readers of index and project pages, on bodies the index should not send."""

import pytest
from scrapy.http import HtmlResponse, Request, TextResponse

from crawler.spiders.npm.records import NpmPackage
from crawler.spiders.pypi.records import PypiPackage
from crawler.spiders.pypi.spider import page_serial, parse_index, parse_project_page

PROJECT_HTML = (
    b'<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1"></head><body>'
    b'<a href="https://files.example/tiny-tool-1.0.tar.gz#sha256=00" data-requires-python="&gt;=3.9">'
    b"tiny-tool-1.0.tar.gz</a></body></html>\n<!--SERIAL 4242-->"
)


def html(url: str, body: bytes) -> HtmlResponse:
    return HtmlResponse(url, body=body, headers={"Content-Type": "text/html"}, request=Request(url))


def test_an_html_project_page_gives_its_serial_and_requires_python():
    response = html("http://127.0.0.1:9/simple/tiny-tool/", PROJECT_HTML)
    page = parse_project_page("tiny-tool", response)
    assert page_serial(response) == 4242
    (package,) = page.packages
    files = [{"version": package.version, "requires-python": package.requires_python}]
    record = PypiPackage.from_simple_page("tiny-tool", files, None, page_serial(response))
    assert record.requires_python == ">=3.9" and record.last_serial == 4242


@pytest.mark.parametrize(
    "body", [b"<html><body><h1>Sign in to continue</h1></body></html>", b"", b"Service Unavailable"]
)
def test_a_body_that_is_not_a_simple_page_is_refused(body):
    with pytest.raises(ValueError, match="not a PEP 503"):
        parse_project_page("tiny-tool", html("http://127.0.0.1:9/simple/tiny-tool/", body))
    with pytest.raises(ValueError, match="not a PEP 503"):
        parse_index(html("http://127.0.0.1:9/simple/", body))
    json_body = TextResponse(
        "http://127.0.0.1:9/simple/x/",
        body=b'{"error": "nope"}',
        headers={"Content-Type": "application/vnd.pypi.simple.v1+json"},
    )
    with pytest.raises(ValueError, match="not a PEP 691"):
        parse_project_page("x", json_body)
    with pytest.raises(ValueError, match="not a PEP 691"):
        parse_index(json_body)


def test_the_json_record_is_of_the_release_its_info_describes():
    doc = {
        "info": {"name": "Tiny-Tool", "version": "1.0", "summary": "of 1.0", "requires_python": ">=3.8"},
        # a newer release listed without being the one `info` describes (e.g. a pre-release or yanked)
        "releases": {"1.0": [{"upload_time_iso_8601": "2024-01-01T00:00:00Z"}], "2.0": [{"yanked": False}]},
    }
    record = PypiPackage.from_json_api(doc, 5)
    assert record.version == "1.0" and record.summary == "of 1.0"


def test_the_abbreviated_packument_keeps_its_modified_time():
    doc = {"name": "tiny", "modified": "2026-05-01T10:00:00.000Z", "dist-tags": {"latest": "1.0.0"}, "versions": {}}
    assert NpmPackage.from_packument(doc).modified.isoformat().startswith("2026-05-01T10:00:00")
