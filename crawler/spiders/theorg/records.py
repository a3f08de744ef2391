"""The ``orgs`` namespace: one record per company, its positions as an org graph, and its teams.

Positions carry their parent position's id, so the chart is a graph SQL can walk: a recursive query from
the position without a parent (the CEO) down gives the hierarchy (README: Crawling TheOrg).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from crawler.items.base import Record
from crawler.items.fields import text

DESCRIPTION_LIMIT = 4096
#: a chart bigger than this is not a chart a page shows: the page changed shape
MAX_POSITIONS = 50_000


class OrgPosition(BaseModel):
    """One position of the chart: who holds it, in which team, and whom it reports to."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str | None = None
    person_name: str | None = None
    person_id: str | None = None
    team_id: str | None = None
    team: str | None = None
    #: the position this one reports to; None for the top of the chart
    parent_id: str | None = None
    linkedin_url: str | None = None


class OrgTeam(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None = None
    slug: str | None = None
    parent_id: str | None = None


class OrgCompany(Record):
    """A company's page: the company, its positions (an org graph) and its teams."""

    namespace = "orgs"
    table = "orgs"
    key = ("slug",)
    schema_version = 1
    #: other sources may look up the companies' domains (crawler.inputs)
    domain_columns: ClassVar[tuple[str, ...]] = ("domain", "website")
    domain_filter: ClassVar[str | None] = "NOT deleted"

    slug: str
    #: None only in a tombstone (a company page the site no longer has)
    name: str | None = None
    company_id: str | None = None
    domain: str | None = None
    website: str | None = None
    size: str | None = None
    industry: str | None = None
    location: str | None = None
    description: str | None = None
    positions_count: int | None = None
    teams_count: int | None = None
    #: which shape the data was read from: next_data, flight, json_ld or browser
    page_shape: str | None = None
    positions: list[OrgPosition] = []
    teams: list[OrgTeam] = []
    deleted: bool = False

    @classmethod
    def tombstone(cls, slug: str) -> OrgCompany:
        """The record of a company page the site no longer has (stored before)."""
        return cls(slug=slug, deleted=True)

    @classmethod
    def from_page(cls, data: dict[str, Any], page_shape: str) -> OrgCompany:
        """Build the record from a page's normalized data (:func:`crawler.spiders.theorg.pages.org_data`):
        ``company``, ``positions``, ``teams``, ``people`` and ``reportingLines``. Raises ``ValueError``
        naming what is missing when the data is not a company's (a page that changed shape)."""
        company = data.get("company")
        if not isinstance(company, dict):
            raise ValueError("no company object")
        slug, name = _id(company.get("slug")), text(company.get("name"))
        if not slug or not name:
            raise ValueError(f"company without {'slug' if not slug else 'name'}")
        people = {
            _id(person.get("id")): person
            for person in _objects(data.get("people"), "people")
            if _id(person.get("id")) is not None
        }
        teams = [_team(team) for team in _objects(data.get("teams"), "teams")]
        team_names = {team.id: team.name for team in teams}
        parents = {
            _id(line.get("positionId")): _id(line.get("parentPositionId"))
            for line in _objects(data.get("reportingLines"), "reportingLines")
        }
        raw_positions = _objects(data.get("positions"), "positions")
        if len(raw_positions) > MAX_POSITIONS:
            raise ValueError(f"{len(raw_positions)} positions: more than a chart holds")
        positions = [_position(p, people, team_names, parents) for p in raw_positions]
        website = text(company.get("website") or company.get("url"))
        return cls(
            slug=slug.lower(),
            name=name,
            company_id=_id(company.get("id")),
            domain=(text(company.get("domain")) or _host(website) or "").lower() or None,
            website=website,
            size=_id(company.get("size") or company.get("employeeRange")),
            industry=text(company.get("industry")),
            location=text(company.get("location")),
            description=text(company.get("description"), DESCRIPTION_LIMIT),
            positions_count=_count(company.get("positionsCount")),
            teams_count=_count(company.get("teamsCount")),
            page_shape=page_shape,
            positions=positions,
            teams=teams,
        )


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{what} is not a list of objects")
    return value


def _id(value: Any) -> str | None:
    """An identifier as text: numbers and strings, never a structure stringified."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return text(value)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _host(url: str | None) -> str | None:
    if not url:
        return None
    host = urlsplit(url if "//" in url else f"//{url}").hostname
    return host.removeprefix("www.") if host else None


def _team(team: dict[str, Any]) -> OrgTeam:
    team_id = _id(team.get("id"))
    if team_id is None:
        raise ValueError("a team without id")
    return OrgTeam(
        id=team_id, name=text(team.get("name")), slug=_id(team.get("slug")), parent_id=_id(team.get("parentTeamId"))
    )


def _position(
    position: dict[str, Any],
    people: dict[str | None, dict[str, Any]],
    team_names: dict[str, str | None],
    parents: dict[str | None, str | None],
) -> OrgPosition:
    position_id = _id(position.get("id"))
    if position_id is None:
        raise ValueError("a position without id")
    person = position.get("person") if isinstance(position.get("person"), dict) else None
    person = person or people.get(_id(position.get("personId"))) or {}
    team_id = _id(position.get("teamId"))
    parent = _id(position.get("parentPositionId")) if "parentPositionId" in position else parents.get(position_id)
    return OrgPosition(
        id=position_id,
        title=text(position.get("title")),
        person_name=text(person.get("fullName") or person.get("name")),
        person_id=_id(person.get("id")),
        team_id=team_id,
        team=text(position.get("team")) or team_names.get(team_id or ""),
        parent_id=parent if parent != position_id else None,
        linkedin_url=text(person.get("linkedInUrl") or person.get("linkedin")),
    )
