"""The TheOrg page parsers: every shape of the fake, the recorded Next.js samples, and broken shapes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from crawler.spiders.theorg import pages
from crawler.spiders.theorg.records import OrgCompany
from tests.fakes.theorg import FakeTheOrg, app_router_page, flight_payload, pages_router_page, script_page

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "nextjs"
APP_ROUTER_SAMPLE = SAMPLES / "recipescrapers_kiddokitchen_1.app-router-rsc.html"
PAGES_ROUTER_SAMPLE = SAMPLES / "recipescrapers_akispetretzikis.pages-router.html"


@pytest.fixture(scope="module")
def fake() -> FakeTheOrg:
    return FakeTheOrg(companies=3, shapes=("next_data", "flight", "script"), positions=7)


def test_pages_router_page_gives_the_whole_chart(fake):
    company = fake.company("company-0000")
    page = pages.selector(pages_router_page(company))
    data = pages.page_props_org(pages.next_data(page))
    record = OrgCompany.from_page(data, "next_data")
    assert record.slug == "company-0000" and record.name == "Company 0000 Inc."
    assert record.domain == "company-0000.io" and record.positions_count == 7 and record.teams_count == 4
    assert [p.id for p in record.positions] == [p["id"] for p in company.data["positions"]]
    parents = {line["positionId"]: line["parentPositionId"] for line in company.data["reportingLines"]}
    assert {p.id: p.parent_id for p in record.positions} == {p.id: parents.get(p.id) for p in record.positions}
    ceo = record.positions[0]
    assert ceo.parent_id is None and ceo.title == "Chief Executive Officer" and ceo.team == "Executive"
    assert ceo.person_name == company.data["people"][0]["fullName"] and ceo.linkedin_url.endswith("company-0000-0")
    assert record.positions[2].linkedin_url is None  # not published for every third person
    assert {t.name for t in record.teams} == {"Executive", "Engineering", "Sales", "Operations"}
    assert pages.json_ld_organization(page)["name"] == "Company 0000 Inc."


def test_app_router_flight_rows_resolve_references_undefined_and_escapes(fake):
    company = fake.company("company-0001")
    page = pages.selector(app_router_page(company))
    chunks = pages.flight_chunks(page)
    assert chunks[0] == [0] and len(chunks) == 5  # the bootstrap chunk, then the payload cut in four
    rows = pages.flight_rows(pages.flight_payload(chunks))
    assert rows["2"]["name"] == "" and rows["1"] == ["/_next/static/css/app.css", "style"]
    assert json.loads(rows["7"])["@type"] == "Organization"  # a T row: text of a given length
    data = pages.flight_org(rows)
    record = OrgCompany.from_page(data, "flight")
    assert record.description == "$10M in revenue"  # "$$" escapes a leading "$"
    assert [p.parent_id for p in record.positions] == [
        next((line["parentPositionId"] for line in company.data["reportingLines"] if line["positionId"] == p.id), None)
        for p in record.positions
    ]
    assert record.positions[2].linkedin_url is None  # "$undefined"
    assert record.positions[1].linkedin_url.endswith("company-0001-1")
    assert record.positions[0].team == "Executive"  # the team name from the teams list


def test_a_payload_in_one_binary_chunk_reads_the_same(fake):
    payload = flight_payload(fake.company("company-0001"))
    binary = [[0], [3, base64.b64encode(payload.encode()).decode()]]
    assert pages.flight_rows(pages.flight_payload(binary)) == pages.flight_rows(payload.encode())


def test_script_page_names_the_company_but_holds_no_chart(fake):
    page = pages.selector(script_page(fake.company("company-0002")))
    data = pages.page_props_org(pages.next_data(page))
    assert data["company"]["slug"] == "company-0002" and data["positions"] is None
    assert pages.rendered_chart(page) == ([], [])  # nothing rendered without scripts


def test_rendered_chart_reads_positions_parents_and_teams():
    html = (
        '<div id="org-chart"><div data-position-id="p1" data-team-id="t1" data-team="Executive">'
        '<span class="name">Ada</span><span class="title">CEO</span>'
        '<a href="https://www.linkedin.com/in/ada">in</a></div>'
        '<div data-position-id="p2" data-parent-id="p1" data-team-id="t2" data-team="Sales">'
        '<span class="name">Alan</span><span class="title">VP Sales</span></div></div>'
    )
    positions, teams = pages.rendered_chart(pages.selector(html))
    data = {"company": {"slug": "acme", "name": "Acme"}, "positions": positions, "teams": teams}
    record = OrgCompany.from_page(data, "browser")
    assert [(p.id, p.parent_id, p.person_name, p.title, p.team) for p in record.positions] == [
        ("p1", None, "Ada", "CEO", "Executive"),
        ("p2", "p1", "Alan", "VP Sales", "Sales"),
    ]
    assert record.positions[0].linkedin_url == "https://www.linkedin.com/in/ada"
    assert [(t.id, t.name) for t in record.teams] == [("t1", "Executive"), ("t2", "Sales")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"organization": {"slug": "a", "name": "A"}}, "no company object"),
        ({"company": {"slug": "a"}}, "company without name"),
        ({"company": {"name": "A"}}, "company without slug"),
        ({"company": {"slug": "a", "name": "A"}, "positions": {"p1": {}}}, "positions is not a list of objects"),
        ({"company": {"slug": "a", "name": "A"}, "positions": [{"title": "CEO"}]}, "a position without id"),
        ({"company": {"slug": "a", "name": "A"}, "teams": ["Sales"]}, "teams is not a list of objects"),
    ],
)
def test_data_that_changed_shape_is_refused_never_a_record_of_nulls(data, reason):
    with pytest.raises(ValueError, match=reason):
        OrgCompany.from_page(data, "next_data")


def test_broken_markers_are_shape_errors():
    with pytest.raises(pages.ShapeError, match="not JSON"):
        pages.next_data(pages.selector('<script id="__NEXT_DATA__">{"props": </script>'))
    with pytest.raises(pages.ShapeError, match=r"no props\.pageProps"):
        pages.next_data(pages.selector('<script id="__NEXT_DATA__">{"props": []}</script>'))
    with pytest.raises(pages.ShapeError, match="not hexadecimal"):
        pages.flight_rows(b'zz:["$"]\n')
    with pytest.raises(pages.ShapeError, match="not JSON"):
        pages.flight_rows(b"1:{broken\n")


def test_reference_cycles_and_huge_payloads_stay_bounded():
    rows = pages.flight_rows(b'1:{"company":"$2","next":"$1"}\n2:{"name":"A","slug":"a","self":"$2"}\n')
    data = pages.flight_org(rows)
    assert data["company"]["name"] == "A" and data["company"]["self"] == "$2"  # a cycle stays a reference
    wide = b"1:" + json.dumps([[i] * 50 for i in range(20_000)]).encode() + b"\n"
    with pytest.raises(pages.ShapeError, match="too large"):
        pages.flight_org(pages.flight_rows(wide))


@pytest.mark.skipif(not APP_ROUTER_SAMPLE.exists(), reason="../shared/samples not present")
def test_flight_parser_on_the_recorded_app_router_page():
    page = pages.selector(APP_ROUTER_SAMPLE.read_text())
    assert pages.next_data(page) is None
    chunks = pages.flight_chunks(page)
    assert len(chunks) == 14 and chunks[:2] == [[0], [2, None]]  # the start, form state, then 12 of rows
    rows = pages.flight_rows(pages.flight_payload(chunks))
    assert len(rows) == 21  # as njsparser and React's client read it
    assert rows["0"] == "$L6"
    assert rows["7"]["id"] == 6054 and rows["7"]["chunks"][0].startswith("272:")  # an I (module) row
    assert rows["1"][1] == "font"  # an HL (hint) row
    recipe = json.loads(rows["13"])  # a T row: JSON-LD as text, its length in bytes
    assert recipe["@type"] == "Recipe" and recipe["name"] == "Pasta med broccolipesto"
    tree = pages.resolve(rows["0"], rows, [100_000])
    assert isinstance(tree, list)  # references resolved into the page tree
    assert pages.flight_org(rows) is None  # a recipe page: no company anywhere


@pytest.mark.skipif(not PAGES_ROUTER_SAMPLE.exists(), reason="../shared/samples not present")
def test_next_data_parser_on_the_recorded_pages_router_page():
    page = pages.selector(PAGES_ROUTER_SAMPLE.read_text())
    page_props = pages.next_data(page)
    assert list(page_props) == ["ssRecipe"]
    assert pages.page_props_org(page_props) is None  # not a company page: the spider's shape_changed
    assert pages.flight_chunks(page) is None


def test_dead_letters_of_pages_and_searches_can_be_replayed():
    from crawler.spiders.theorg.spider import TheorgSpider

    failed = [
        {"id": 1, "url": "http://127.0.0.1:9/org/acme"},
        {"id": 2, "url": "http://127.0.0.1:9/search?q=globex.io"},
        {"id": 3, "url": None},
        {"id": 4, "url": "http://127.0.0.1:9/org/acme"},
    ]
    assert TheorgSpider.replay_arguments(failed) == ({"orgs": "acme", "domains": "globex.io"}, [1, 2, 4])
