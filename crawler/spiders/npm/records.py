"""The ``npm`` namespace: one record per package, built from a packument."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from crawler.items.base import JsonText, Record
from crawler.items.fields import (
    normalize_repository_url,
    parse_person,
    parse_time,
    string_list,
    string_map,
    text,
)

DESCRIPTION_LIMIT = 4096


class Person(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str | None = None
    email: str | None = None


class NpmPackage(Record):
    """An npm package as of its latest dist-tag. Tombstones (deleted or 404) carry only the name."""

    namespace = "npm"
    table = "npm_package"
    key = ("name",)
    schema_version = 1
    # the registry's own time (a tombstone's: when the deletion was seen), not the crawling host's clock
    version_column = "modified"
    domain_columns = ("homepage", "repository_url")
    people_columns = (("author_name", "author_email"),)

    name: str
    version: str | None = None
    description: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    license: str | None = None
    keywords: list[str] = []
    dependencies: dict[str, str] = {}
    dev_dependencies: dict[str, str] = {}
    peer_dependencies: dict[str, str] = {}
    maintainers: list[Person] = []
    repository_url: str | None = None
    homepage: str | None = None
    created: datetime | None = None
    modified: datetime | None = None
    versions_count: int = 0
    dist_tags: dict[str, str] = {}
    deprecated: str | None = None
    unpublished: bool = False
    deleted: bool = False
    rev: str | None = None
    manifest: JsonText = None

    @classmethod
    def tombstone(cls, name: str) -> NpmPackage:
        """The record of a package the registry deleted; ``modified`` is when the deletion was seen, so
        that it ranks after the package's last published state."""
        return cls(name=name, deleted=True, modified=datetime.now(UTC))

    @classmethod
    def from_packument(cls, doc: dict[str, Any]) -> NpmPackage:
        """Build the record from a full packument (the registry's package document)."""
        name = text(doc.get("name")) or text(doc.get("_id"))
        if name is None:
            raise ValueError("packument has no name")
        times = doc.get("time") if isinstance(doc.get("time"), dict) else {}
        versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
        dist_tags = string_map(doc.get("dist-tags"))
        latest_version = _latest_version(dist_tags, versions, times)
        manifest = versions.get(latest_version) if latest_version else None
        manifest = manifest if isinstance(manifest, dict) else {}
        author_name, author_email = parse_person(manifest.get("author") or doc.get("author"))
        return cls(
            name=name,
            version=latest_version,
            description=text(manifest.get("description") or doc.get("description"), DESCRIPTION_LIMIT),
            author_name=author_name,
            author_email=author_email,
            license=_license(manifest) or _license(doc),
            keywords=string_list(manifest.get("keywords") or doc.get("keywords")),
            dependencies=string_map(manifest.get("dependencies")),
            dev_dependencies=string_map(manifest.get("devDependencies")),
            peer_dependencies=string_map(manifest.get("peerDependencies")),
            maintainers=[Person(name=n, email=e) for n, e in map(parse_person, _list(doc.get("maintainers")))],
            repository_url=normalize_repository_url(manifest.get("repository") or doc.get("repository")),
            homepage=text(manifest.get("homepage") or doc.get("homepage")),
            created=parse_time(times.get("created")),
            # the abbreviated (corgi) document has no `time`, but a top-level `modified`
            modified=parse_time(times.get("modified") or doc.get("modified")),
            versions_count=len(versions),
            dist_tags=dist_tags,
            deprecated=_deprecated(manifest.get("deprecated")),
            unpublished=bool(times.get("unpublished")) and not versions,
            rev=text(doc.get("_rev")),
            manifest={k: v for k, v in manifest.items() if k not in ("readme", "readmeFilename")} or None,
        )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _latest_version(dist_tags: dict[str, str], versions: dict[str, Any], times: dict[str, Any]) -> str | None:
    latest = dist_tags.get("latest")
    if latest in versions:
        return latest
    if not versions:
        return latest
    # No usable dist-tag: take the most recently published version.
    return max(versions, key=lambda v: str(times.get(v, "")))


def _license(doc: dict[str, Any]) -> str | None:
    value = doc.get("license")
    if isinstance(value, dict):  # legacy {"type": "MIT", "url": …}
        value = value.get("type")
    if value is None and isinstance(doc.get("licenses"), list):  # legacy array form
        types = [lic.get("type") if isinstance(lic, dict) else lic for lic in doc["licenses"]]
        types = [t for t in types if isinstance(t, str) and t.strip()]
        value = " OR ".join(types) if types else None
    return text(value)


def _deprecated(value: Any) -> str | None:
    if value is True:
        return "deprecated"
    return text(value)
