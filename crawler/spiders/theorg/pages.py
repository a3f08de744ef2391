"""Reading a company's data out of its page, in every shape the site serves.

* Pages Router: ``<script id="__NEXT_DATA__">`` holds ``props.pageProps`` (company, teams, positions,
  people, reporting lines).
* App Router: the same data streams in ``self.__next_f.push([...])`` flight chunks (React Server
  Components rows), decoded by :func:`flight_rows` and searched by :func:`flight_org`.
* JSON-LD ``Organization`` (with ``employee``): company fields, and flat positions when nothing better.
* A chart rendered by scripts (only a browser sees it): ``[data-position-id]`` elements, :func:`rendered_chart`.

Each parser returns the normalized data :meth:`OrgCompany.from_page
<crawler.spiders.theorg.records.OrgCompany.from_page>` takes, or None when its shape is not there.

A flight parser of our own rather than njsparser: that library imports a JavaScript engine
(pythonmonkey, +50 MB per process) for one function we need, and it is a few dozen lines.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import orjson
from parsel import Selector

#: aliases under which a page's props carry each part (App Router pages use ``initial…`` names)
ALIASES = {
    "company": ("company", "initialCompany"),
    "positions": ("positions", "initialPositions"),
    "teams": ("teams", "initialTeams"),
    "people": ("people", "initialPeople"),
    "reportingLines": ("reportingLines", "edges"),
}
_PUSH = re.compile(r"^\s*self\.__next_f\.push\((?P<chunk>\[.*\])\)\s*;?\s*$", re.DOTALL)
#: the script that starts the stream: ``(self.__next_f=self.__next_f||[]).push([0])``, maybe more after ``;``
_INIT = re.compile(r"^\s*\(self\.__next_f\s*=\s*self\.__next_f\s*\|\|\s*\[\]\)\.push\(\[[^\]]*\]\)\s*;?")
_ROW_ID = re.compile(rb"^[0-9a-fA-F]*$")
_REFERENCE = re.compile(r"^\$(?:[L@])?(?P<row>[0-9a-fA-F]+)$")
#: nodes visited when searching a page's data: a hostile page cannot make the search unbounded
MAX_NODES = 500_000


class ShapeError(ValueError):
    """The page has the shape's markers but not its expected structure."""


def selector(html: str) -> Selector:
    return Selector(text=html or "<html></html>", type="html")


# -- Pages Router ---------------------------------------------------------------------------------


def next_data(page: Selector) -> dict[str, Any] | None:
    """``props.pageProps`` of the ``__NEXT_DATA__`` script; None when the page has none."""
    raw = page.css("script#__NEXT_DATA__::text").get()
    if raw is None:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ShapeError(f"__NEXT_DATA__ is not JSON: {exc}") from None
    props = document.get("props") if isinstance(document, dict) else None
    page_props = props.get("pageProps") if isinstance(props, dict) else None
    if not isinstance(page_props, dict):
        raise ShapeError("__NEXT_DATA__ has no props.pageProps object")
    return page_props


# -- App Router flight data -----------------------------------------------------------------------


def flight_chunks(page: Selector) -> list[Any] | None:
    """The ``self.__next_f`` array as the browser builds it; None when the page pushes nothing."""
    chunks = []
    for script in page.css("script::text").getall():
        if "__next_f" not in script:
            continue
        init = _INIT.match(script)
        if init is not None:
            chunks.append([0])  # the stream starts (its only content)
            script = script[init.end() :]
        match = _PUSH.match(script)
        if match is None:
            continue
        try:
            chunk = orjson.loads(match["chunk"])
        except orjson.JSONDecodeError as exc:
            raise ShapeError(f"a flight chunk is not JSON: {exc}") from None
        if isinstance(chunk, list) and chunk:
            chunks.append(chunk)
    return chunks or None


def flight_payload(chunks: list[Any]) -> bytes:
    """The RSC payload the chunks stream: text chunks (type 1) and base64 binary ones (type 3), joined.
    Type 0 starts the stream, type 2 is form state (not data)."""
    parts: list[bytes] = []
    for chunk in chunks:
        kind = chunk[0]
        if kind == 1 and len(chunk) > 1 and isinstance(chunk[1], str):
            parts.append(chunk[1].encode())
        elif kind == 3 and len(chunk) > 1 and isinstance(chunk[1], str):
            try:
                parts.append(base64.b64decode(chunk[1], validate=True))
            except ValueError as exc:
                raise ShapeError(f"a binary flight chunk is not base64: {exc}") from None
    return b"".join(parts)


def flight_rows(payload: bytes) -> dict[str, Any]:
    """The rows of an RSC payload by id: ``<hex id>:<tag><value>\\n``. JSON rows are decoded; a ``T`` row
    is text of a byte length given in hex (``T<len>,<text>``, no newline after it); other tags (``I``
    modules, ``HL`` hints, ``E`` errors) keep their decoded JSON when it is JSON, else their text."""
    rows: dict[str, Any] = {}
    position, end = 0, len(payload)
    while position < end:
        colon = payload.find(b":", position)
        if colon == -1:
            if payload[position:].strip():
                raise ShapeError("flight data ends inside a row")
            break
        row_id = payload[position:colon].strip()
        if not _ROW_ID.match(row_id):
            raise ShapeError(f"a flight row id is not hexadecimal: {row_id[:40]!r}")
        position = colon + 1
        tag_end = position
        while tag_end < end and 65 <= payload[tag_end] <= 90:  # upper-case letters
            tag_end += 1
        tag = payload[position:tag_end].decode()
        if tag == "T":
            comma = payload.find(b",", tag_end)
            if comma == -1:
                raise ShapeError("a flight text row has no length")
            try:
                length = int(payload[tag_end:comma], 16)
            except ValueError:
                raise ShapeError("a flight text row's length is not hexadecimal") from None
            value: Any = payload[comma + 1 : comma + 1 + length].decode("utf-8", "replace")
            position = comma + 1 + length
        else:
            newline = payload.find(b"\n", tag_end)
            newline = end if newline == -1 else newline
            raw = payload[tag_end:newline]
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                if not tag:
                    raise ShapeError(f"flight row {row_id.decode()!r} is not JSON") from None
                value = raw.decode("utf-8", "replace")
            position = newline + 1
        rows[row_id.decode().lower()] = value
    return rows


def resolve(value: Any, rows: dict[str, Any], budget: list[int], seen: frozenset[str] = frozenset()) -> Any:
    """``value`` with its row references (``$1f``, ``$L1f``, ``$@1f``) replaced by the rows they name,
    ``$undefined`` by None and ``$$`` escapes undone; a cycle stays a reference."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ShapeError("flight data too large to search")
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return value[1:]
        if value == "$undefined":
            return None
        match = _REFERENCE.match(value)
        row = match["row"].lower() if match else None
        if row is not None and row in rows and row not in seen:
            return resolve(rows[row], rows, budget, seen | {row})
        return value
    if isinstance(value, list):
        return [resolve(item, rows, budget, seen) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, rows, budget, seen) for key, item in value.items()}
    return value


def flight_org(rows: dict[str, Any]) -> dict[str, Any] | None:
    """The props object that carries a company (``company`` / ``initialCompany``), references resolved."""
    budget = [MAX_NODES]
    for value in rows.values():
        for props in _objects_with_company(value, budget):
            return _normalized(resolve(props, rows, budget))
    return None


def _objects_with_company(value: Any, budget: list[int]) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            raise ShapeError("flight data too large to search")
        node = stack.pop()
        if isinstance(node, dict):
            if any(key in node for key in ALIASES["company"]):
                yield node
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def _normalized(props: dict[str, Any]) -> dict[str, Any]:
    return {name: next((props[a] for a in aliases if a in props), None) for name, aliases in ALIASES.items()}


def page_props_org(page_props: dict[str, Any]) -> dict[str, Any] | None:
    """The normalized data of a ``pageProps`` that carries a company (None when it carries none)."""
    if not any(alias in page_props for alias in ALIASES["company"]):
        return None
    return _normalized(page_props)


# -- JSON-LD --------------------------------------------------------------------------------------


def json_ld_organization(page: Selector) -> dict[str, Any] | None:
    """The first JSON-LD ``Organization`` (or subtype ``Corporation``) of the page, also inside ``@graph``."""
    for raw in page.css('script[type="application/ld+json"]::text').getall():
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # a broken block of some other markup: not this page's organization
        candidates = document if isinstance(document, list) else [document]
        for candidate in list(candidates):
            if isinstance(candidate, dict) and isinstance(candidate.get("@graph"), list):
                candidates.extend(candidate["@graph"])
        for candidate in candidates:
            if isinstance(candidate, dict) and candidate.get("@type") in ("Organization", "Corporation"):
                return candidate
    return None


def json_ld_org(organization: dict[str, Any], slug: str) -> dict[str, Any]:
    """Normalized data from a JSON-LD Organization: the company, and its employees as positions with no
    known parent (JSON-LD has no reporting lines)."""
    address = organization.get("address")
    location = None
    if isinstance(address, dict):
        location = ", ".join(
            part
            for part in (address.get("addressLocality"), address.get("addressRegion"), address.get("addressCountry"))
            if isinstance(part, str) and part
        )
    employees = organization.get("employee")
    employees = employees if isinstance(employees, list) else [employees] if isinstance(employees, dict) else []
    size = organization.get("numberOfEmployees")
    if isinstance(size, dict):
        size = size.get("value")
    positions = [
        {
            "id": f"ld-{index}",
            "title": employee.get("jobTitle"),
            "person": {"fullName": employee.get("name"), "linkedInUrl": _linkedin(employee.get("sameAs"))},
        }
        for index, employee in enumerate(e for e in employees if isinstance(e, dict))
    ]
    company = {
        "slug": slug,
        "name": organization.get("name"),
        "website": organization.get("url"),
        "description": organization.get("description"),
        "size": str(size) if isinstance(size, int | str) else None,
        "location": location or None,
        "industry": organization.get("industry"),
    }
    return {"company": company, "positions": positions or None, "teams": None, "people": None}


def _linkedin(same_as: Any) -> str | None:
    links = same_as if isinstance(same_as, list) else [same_as]
    return next((link for link in links if isinstance(link, str) and "linkedin." in link), None)


# -- a chart rendered by scripts ------------------------------------------------------------------


def rendered_chart(page: Selector) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Positions and teams of a chart in the rendered DOM: ``[data-position-id]`` elements with
    ``data-parent-id``, ``data-team-id``, ``data-team``, and ``.title``, ``.name`` and a LinkedIn link."""
    positions, teams = [], {}
    for node in page.css("[data-position-id]"):
        team_id = node.attrib.get("data-team-id") or None
        if team_id:
            teams[team_id] = {"id": team_id, "name": node.attrib.get("data-team")}
        positions.append(
            {
                "id": node.attrib.get("data-position-id"),
                "parentPositionId": node.attrib.get("data-parent-id") or None,
                "title": node.css(".title::text").get(),
                "teamId": team_id,
                "person": {
                    "fullName": node.css(".name::text").get(),
                    "linkedInUrl": node.css('a[href*="linkedin."]::attr(href)').get(),
                },
            }
        )
    return positions, list(teams.values())
