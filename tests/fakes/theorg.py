"""Loopback fake of TheOrg: company pages in every shape the site serves, and a forward proxy.

* ``GET /org/<slug>``: a company page. Which shape each company gets cycles through ``shapes``:
  ``next_data`` (Pages Router: ``__NEXT_DATA__`` pageProps with company, teams, positions, people and
  reporting lines, plus a JSON-LD Organization), ``flight`` (App Router: the same data in
  ``self.__next_f.push`` chunks, split across rows referenced by ``$<id>``), ``script`` (the HTML names the
  company; the chart is built by an inline script from encoded data, its lower levels only after
  "expand" is clicked: only a browser can read it).
* ``GET /search?q=<domain>``: a Pages Router search page whose ``results`` list the companies on that domain.
* ``GET /robots.txt``: disallows ``/org/fault-disallowed``.
* Fault slugs: ``fault-rate-limited`` (429 with ``Retry-After`` on its first request), ``fault-broken``
  (pageProps renamed ``organization``: the page broke shape), ``fault-bad-positions`` (positions an object,
  not a list), ``fault-not-found`` (404), ``fault-disallowed`` (forbidden by robots.txt),
  ``fault-empty-chart`` (a script page whose script renders nothing).
* ``GET /static/…``: images and fonts the script page asks for, counted (a browser that blocks them asks
  for none).

:class:`FakeProxy` is an HTTP forward proxy on loopback that forwards only to loopback and counts what
it forwarded (per-context proxies in the browser, per-request proxies over HTTP).

    with FakeTheOrg(companies=12).serve() as fake: ...      # in-process, background thread
    python -m tests.fakes.theorg --port 0 --companies 500   # own process (prints its URL as JSON)
"""

from __future__ import annotations

import argparse
import base64
import collections
import html
import ipaddress
import json
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread, run_standalone

SHAPES = ("next_data", "flight", "script")
FAULT_RATE_LIMITED = "fault-rate-limited"
FAULT_BROKEN = "fault-broken"
FAULT_BAD_POSITIONS = "fault-bad-positions"
FAULT_NOT_FOUND = "fault-not-found"
FAULT_DISALLOWED = "fault-disallowed"
FAULT_EMPTY_CHART = "fault-empty-chart"
FAULTS = (FAULT_RATE_LIMITED, FAULT_BROKEN, FAULT_BAD_POSITIONS, FAULT_NOT_FOUND, FAULT_DISALLOWED, FAULT_EMPTY_CHART)

FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Donald", "Frances")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds", "Perlman")
TEAMS = ("Executive", "Engineering", "Sales", "Operations")
TITLES = ("VP", "Director", "Manager", "Lead", "Engineer", "Analyst")
INDUSTRIES = ("Software", "Logistics", "Fintech", "Healthcare")


@dataclass(frozen=True)
class Company:
    slug: str
    shape: str
    data: dict[str, Any]  # pageProps: company, teams, positions, people, reportingLines


def company_slug(index: int) -> str:
    return f"company-{index:04d}"


def build_company(slug: str, index: int, shape: str, seed: int, positions: int) -> Company:
    """A company and its chart: position 0 is the CEO; every other reports to an earlier one."""
    rng = random.Random(f"{seed}/{slug}")
    teams = [{"id": f"t{index}-{n}", "name": name, "slug": name.lower()} for n, name in enumerate(TEAMS)]
    people, chart, lines = [], [], []
    for n in range(positions):
        person_id = f"u{index}-{n}"
        people.append(
            {
                "id": person_id,
                "fullName": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "linkedInUrl": f"https://www.linkedin.com/in/{slug}-{n}" if n % 3 != 2 else None,
            }
        )
        team = teams[0] if n == 0 else teams[1 + n % (len(TEAMS) - 1)]
        title = "Chief Executive Officer" if n == 0 else f"{rng.choice(TITLES)}, {team['name']}"
        chart.append({"id": f"p{index}-{n}", "title": title, "personId": person_id, "teamId": team["id"]})
        if n:
            lines.append({"positionId": f"p{index}-{n}", "parentPositionId": f"p{index}-{rng.randrange(n)}"})
    name = f"Company {index:04d} Inc."
    company = {
        "id": 10_000 + index,
        "slug": slug,
        "name": name,
        "domain": f"{slug}.io",
        "website": f"https://www.{slug}.io/",
        "size": rng.choice(("11-50", "51-200", "201-500")),
        "industry": rng.choice(INDUSTRIES),
        "location": "Springfield, USA",
        "description": "$$10M in revenue" if shape == "flight" else f"{name} makes things.",
        "positionsCount": positions,
        "teamsCount": len(teams),
    }
    return Company(
        slug, shape, {"company": company, "teams": teams, "positions": chart, "people": people, "reportingLines": lines}
    )


# -- page shapes -----------------------------------------------------------------------------------


def _json_ld(company: dict[str, Any], people: list[dict[str, Any]], employees: bool) -> str:
    document: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Organization",
        "name": company["name"],
        "url": company["website"],
        "numberOfEmployees": {"@type": "QuantitativeValue", "value": company["positionsCount"]},
        "address": {"@type": "PostalAddress", "addressLocality": "Springfield", "addressCountry": "US"},
    }
    if employees:
        document["employee"] = [{"@type": "Person", "name": p["fullName"]} for p in people[:3]]
    return json.dumps(document)


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/")


def _document(title: str, head: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charSet="utf-8"/><title>{html.escape(title)}</title>'
        f'<link rel="preload" href="/static/font.woff2" as="font" type="font/woff2" crossorigin=""/>{head}</head>'
        f'<body><div id="__next">{body}</div></body></html>'
    )


def next_data_page(page_props: dict[str, Any], page: str, query: dict[str, str], extra_head: str = "") -> str:
    next_data = {
        "props": {"pageProps": page_props, "__N_SSP": True},
        "page": page,
        "query": query,
        "buildId": "fake-build",
        "isFallback": False,
        "gssp": True,
        "scriptLoader": [],
    }
    head = extra_head + '<script src="/_next/static/chunks/main.js" defer=""></script>'
    body = '<main><h1>Org chart</h1></main><script id="__NEXT_DATA__" type="application/json">'
    return _document("TheOrg", head, body + _script_json(next_data) + "</script>")


def pages_router_page(company: Company) -> str:
    ld = _json_ld(company.data["company"], company.data["people"], employees=True)
    head = f'<script type="application/ld+json">{ld}</script>'
    return next_data_page(company.data, "/org/[slug]", {"slug": company.slug}, head)


def flight_payload(company: Company) -> str:
    """The RSC rows of an App Router page: modules, hints, the props row referring to other rows."""
    data = company.data
    positions = [
        {
            "id": p["id"],
            "title": p["title"],
            "teamId": p["teamId"],
            "person": next(person for person in data["people"] if person["id"] == p["personId"]),
            "parentPositionId": next(
                (line["parentPositionId"] for line in data["reportingLines"] if line["positionId"] == p["id"]),
                None,
            ),
        }
        for p in data["positions"]
    ]
    for position in positions:
        if position["person"]["linkedInUrl"] is None:
            position["person"] = {**position["person"], "linkedInUrl": "$undefined"}
    ld = _json_ld(data["company"], data["people"], employees=False)
    props = {"initialCompany": "$5", "initialPositions": "$6", "teams": data["teams"], "slug": company.slug}
    rows = [
        '1:HL["/_next/static/css/app.css","style"]',
        '2:I{"id":6054,"chunks":["272:static/chunks/webpack.js"],"name":"","async":false}',
        '3:I{"id":7758,"chunks":["99:static/chunks/app/org/[slug]/page.js"],"name":"OrgChart","async":false}',
        '0:["$","$L4",null,{"buildId":"fake-build","children":["$","$L3",null,' + json.dumps(props) + "]}]",
        "5:" + json.dumps(data["company"]),
        "6:" + json.dumps(positions),
    ]
    text = "\n".join(rows) + "\n"
    ld_bytes = ld.encode()
    return text + f"7:T{len(ld_bytes):x}," + ld + '4:["$","html",null,{"lang":"en","children":"$L0"}]\n'


def app_router_page(company: Company) -> str:
    payload = flight_payload(company)
    # the stream arrives in several chunks, cut anywhere (inside rows too)
    cuts = sorted({len(payload) // 3, len(payload) // 2, 2 * len(payload) // 3})
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    scripts = "<script>(self.__next_f=self.__next_f||[]).push([0])</script>"
    scripts += "".join(f"<script>self.__next_f.push({_script_json([1, piece])})</script>" for piece in pieces)
    body = f"<main><h1>{html.escape(company.data['company']['name'])}</h1></main>"
    head = '<script src="/_next/static/chunks/webpack.js" async=""></script>'
    return _document("TheOrg", head, body + scripts)


CHART_SCRIPT = """
(function () {
  const data = JSON.parse(atob(document.getElementById('chart-data').textContent));
  const chart = document.getElementById('org-chart');
  const depth = {};
  for (const p of data.positions) depth[p.id] = p.parentPositionId ? depth[p.parentPositionId] + 1 : 0;
  function render(maxDepth) {
    chart.innerHTML = '';
    for (const p of data.positions) {
      if (depth[p.id] > maxDepth) continue;
      const node = document.createElement('div');
      node.setAttribute('data-position-id', p.id);
      if (p.parentPositionId) node.setAttribute('data-parent-id', p.parentPositionId);
      node.setAttribute('data-team-id', p.teamId);
      node.setAttribute('data-team', p.team);
      node.innerHTML = '<span class="name"></span><span class="title"></span>';
      node.querySelector('.name').textContent = p.name;
      node.querySelector('.title').textContent = p.title;
      if (p.linkedin) {
        const link = document.createElement('a');
        link.href = p.linkedin;
        link.textContent = 'in';
        node.appendChild(link);
      }
      chart.appendChild(node);
    }
    if (maxDepth < 99) {
      const more = document.createElement('button');
      more.setAttribute('data-expand', '');
      more.textContent = 'Show the whole chart';
      more.addEventListener('click', () => setTimeout(() => render(99), 20));
      chart.appendChild(more);
    }
    const logo = new Image(); logo.src = '/static/logo-' + data.slug + '.png';
  }
  setTimeout(() => { if (data.positions.length) render(1); }, 30);
})();
"""


def script_page(company: Company, *, empty: bool = False) -> str:
    data = company.data
    people = {p["id"]: p for p in data["people"]}
    teams = {t["id"]: t["name"] for t in data["teams"]}
    parents = {line["positionId"]: line["parentPositionId"] for line in data["reportingLines"]}
    chart = {
        "slug": company.slug,
        "positions": []
        if empty
        else [
            {
                "id": p["id"],
                "parentPositionId": parents.get(p["id"]),
                "title": p["title"],
                "teamId": p["teamId"],
                "team": teams[p["teamId"]],
                "name": people[p["personId"]]["fullName"],
                "linkedin": people[p["personId"]]["linkedInUrl"],
            }
            for p in data["positions"]
        ],
    }
    encoded = base64.b64encode(json.dumps(chart).encode()).decode()
    page_props = {"company": data["company"]}  # the chart is not in the props: scripts fill it in
    page = next_data_page(page_props, "/org/[slug]", {"slug": company.slug})
    chart_html = (
        f'<div id="org-chart"></div><script type="text/plain" id="chart-data">{encoded}</script>'
        f"<script>{CHART_SCRIPT}</script>"
    )
    return page.replace("<main><h1>Org chart</h1></main>", f"<main><h1>Org chart</h1>{chart_html}</main>")


# -- the fake --------------------------------------------------------------------------------------


class FakeTheOrg:
    """The site: ``companies`` regular companies (shapes cycling through ``shapes``) and the fault slugs."""

    def __init__(
        self,
        companies: int = 12,
        *,
        seed: int = 1,
        shapes: Sequence[str] = SHAPES,
        positions: int = 9,
        retry_after: int = 1,
    ) -> None:
        if not set(shapes) <= set(SHAPES) or not shapes:
            raise ValueError(f"shapes must be some of {SHAPES}")
        self.seed, self.positions, self.retry_after = seed, positions, retry_after
        self.companies = {
            company_slug(i): build_company(company_slug(i), i, shapes[i % len(shapes)], seed, positions)
            for i in range(companies)
        }
        n = companies
        self.faults = {
            FAULT_RATE_LIMITED: build_company(FAULT_RATE_LIMITED, n, "next_data", seed, positions),
            FAULT_BROKEN: build_company(FAULT_BROKEN, n + 1, "next_data", seed, positions),
            FAULT_BAD_POSITIONS: build_company(FAULT_BAD_POSITIONS, n + 2, "next_data", seed, positions),
            FAULT_DISALLOWED: build_company(FAULT_DISALLOWED, n + 3, "next_data", seed, positions),
            FAULT_EMPTY_CHART: build_company(FAULT_EMPTY_CHART, n + 4, "script", seed, positions),
        }
        self.requests: collections.Counter[str] = collections.Counter()
        self.url = ""
        self._lock = threading.Lock()

    def slugs(self, shape: str | None = None) -> list[str]:
        return [slug for slug, company in self.companies.items() if shape is None or company.shape == shape]

    def company(self, slug: str) -> Company:
        return self.companies.get(slug) or self.faults[slug]

    def _count(self, key: str) -> int:
        with self._lock:
            self.requests[key] += 1
            return self.requests[key]

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/org/{slug}", self._org)
        app.router.add_get("/search", self._search)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/_next/{path:.*}", self._asset)
        app.router.add_get("/_fake/requests", self._counts)  # for a benchmark's progress (not counted)
        return app

    def _bind(self, handle: ServerHandle) -> dict[str, Any]:
        self.url = handle.base_url
        return {"url": self.url}

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeTheOrg]:
        with run_in_thread(self.make_app(), host, port, name="fake-theorg") as handle:
            self._bind(handle)
            yield self

    async def _robots(self, request: web.Request) -> web.Response:
        self._count("robots.txt")
        body = f"User-agent: *\nDisallow: /org/{FAULT_DISALLOWED}\nDisallow: /api/\n"
        return web.Response(text=body, content_type="text/plain")

    async def _org(self, request: web.Request) -> web.Response:
        slug = request.match_info["slug"]
        hits = self._count(f"org/{slug}")
        if request.headers.get("X-Via-Proxy"):
            self._count(f"proxied/{request.headers['X-Via-Proxy']}")
        if slug == FAULT_RATE_LIMITED and hits == 1:
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": str(self.retry_after)})
        if slug not in self.companies and slug not in self.faults:
            return web.Response(status=404, text="<html><body>Not found</body></html>", content_type="text/html")
        company = self.company(slug)
        if slug == FAULT_BROKEN:
            props = {"organization": company.data["company"], "members": company.data["positions"]}
            page = next_data_page(props, "/org/[slug]", {"slug": slug})
        elif slug == FAULT_BAD_POSITIONS:
            props = {**company.data, "positions": {p["id"]: p for p in company.data["positions"]}}
            page = next_data_page(props, "/org/[slug]", {"slug": slug})
        elif slug == FAULT_EMPTY_CHART:
            page = script_page(company, empty=True)
        elif company.shape == "flight":
            page = app_router_page(company)
        elif company.shape == "script":
            page = script_page(company)
        else:
            page = pages_router_page(company)
        return web.Response(text=page, content_type="text/html")

    async def _search(self, request: web.Request) -> web.Response:
        self._count("search")
        query = request.query.get("q", "").strip().lower()
        results = [
            {
                "slug": c.slug,
                "name": c.data["company"]["name"],
                "domain": c.data["company"]["domain"],
                "website": c.data["company"]["website"],
            }
            for c in self.companies.values()
            if query and query in c.data["company"]["domain"]
        ]
        page = next_data_page({"results": results, "query": query}, "/search", {"q": query})
        return web.Response(text=page, content_type="text/html")

    async def _counts(self, request: web.Request) -> web.Response:
        with self._lock:
            counts = dict(self.requests)
        return web.json_response(counts)

    async def _static(self, request: web.Request) -> web.Response:
        self._count("static")
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")

    async def _asset(self, request: web.Request) -> web.Response:
        self._count("asset")
        return web.Response(text="/* bundle */", content_type="application/javascript")


class FakeProxy:
    """A forward HTTP proxy on loopback: forwards absolute-form requests to loopback targets only,
    adding ``X-Via-Proxy: <name>``, and counts them."""

    def __init__(self, name: str = "proxy") -> None:
        self.name = name
        self.forwarded = 0
        self.url = ""

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = request.raw_path if request.raw_path.startswith("http") else str(request.url)
        host = urlsplit(target).hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return web.Response(status=403, text="this proxy forwards to loopback only")
        self.forwarded += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")}
        headers["X-Via-Proxy"] = self.name
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(request.method, target, headers=headers, allow_redirects=False) as answer,
        ):
            body = await answer.read()
            passed = {k: v for k, v in answer.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
            return web.Response(status=answer.status, body=body, headers=passed)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        return app

    @contextmanager
    def serve(self) -> Iterator[FakeProxy]:
        with run_in_thread(self.make_app(), name=f"fake-proxy-{self.name}") as handle:
            self.url = handle.base_url.rstrip("/")
            yield self


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.theorg", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--companies", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated page shapes to cycle through")
    parser.add_argument("--positions", type=int, default=9, help="positions per company")
    args = parser.parse_args(argv)
    fake = FakeTheOrg(args.companies, seed=args.seed, shapes=args.shapes.split(","), positions=args.positions)
    run_standalone(fake.make_app(), args.host, args.port, fake._bind)


if __name__ == "__main__":
    main()
