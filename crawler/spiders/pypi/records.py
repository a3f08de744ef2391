"""The ``pypi`` namespace: one record per project, from the JSON API or, on a mirror that serves only the
simple API, from the project page (PEP 691/503) and the latest release's core metadata."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.metadata import parse_email
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict

from crawler.items.base import Record
from crawler.items.fields import is_git_host_url, normalize_repository_url, parse_time, string_list, string_map, text

SUMMARY_LIMIT = 2048
LICENSE_LIMIT = 256
_UNKNOWN = {"unknown", "none", "n/a", "na", ""}
_REPOSITORY_LABELS = ("repository", "source", "source code", "code", "github", "gitlab", "git")


def normalize_name(name: str) -> str:
    """PEP 503 normalization: runs of ``-_.`` become ``-``, lower case (``packaging``'s own)."""
    return canonicalize_name(name)


class YankedRelease(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    reason: str | None = None


class PypiPackage(Record):
    """A PyPI project as of its latest release. Tombstones (deleted projects) carry only the names."""

    namespace = "pypi"
    table = "pypi_package"
    key = ("name",)
    schema_version = 1
    version_column = "last_serial"  # PyPI's own change counter
    domain_columns = ("home_page", "repository_url")
    people_columns = (("author", "author_email"), ("maintainer", "maintainer_email"))

    name: str  # PEP 503 normalized
    display_name: str | None = None
    version: str | None = None
    summary: str | None = None
    author: str | None = None
    author_email: str | None = None
    maintainer: str | None = None
    maintainer_email: str | None = None
    license: str | None = None
    requires_python: str | None = None
    requires_dist: list[str] = []
    classifiers: list[str] = []
    project_urls: dict[str, str] = {}
    repository_url: str | None = None
    home_page: str | None = None
    upload_time: datetime | None = None
    release_count: int | None = None
    yanked_releases: list[YankedRelease] = []
    vulnerabilities_count: int | None = None
    last_serial: int | None = None
    deleted: bool = False
    #: which API the record came from: ``json`` or ``simple`` (a mirror without the JSON API)
    api: str = "json"

    @classmethod
    def tombstone(cls, name: str, last_serial: int | None = None) -> PypiPackage:
        return cls(name=normalize_name(name), display_name=name, deleted=True, last_serial=last_serial)

    @classmethod
    def from_json_api(cls, doc: dict[str, Any], last_serial: int | None = None) -> PypiPackage:
        """Build the record from ``/pypi/<name>/json`` (old and current schemas)."""
        info = doc.get("info")
        if not isinstance(info, dict):
            raise ValueError("JSON API document has no info object")
        display = text(info.get("name"))
        if display is None:
            raise ValueError("JSON API document has no project name")
        releases = doc.get("releases") if isinstance(doc.get("releases"), dict) else None
        files_by_version: dict[str, list[dict[str, Any]]] = {}
        if releases is not None:
            files_by_version = {
                v: [f for f in files if isinstance(f, dict)] for v, files in releases.items() if isinstance(files, list)
            }
        # ``info`` describes ``info.version``: the record is of that release, never of another one's files
        version = text(info.get("version")) or (latest_version(files_by_version) if files_by_version else None)
        latest_files = files_by_version.get(version or "") or [f for f in doc.get("urls") or [] if isinstance(f, dict)]
        project_urls = string_map(info.get("project_urls"))
        home_page = known(info.get("home_page"))
        vulnerabilities = doc.get("vulnerabilities")
        serial = doc.get("last_serial")
        return cls(
            name=normalize_name(display),
            display_name=display,
            version=version,
            summary=known(info.get("summary"), SUMMARY_LIMIT),
            author=known(info.get("author")),
            author_email=known(info.get("author_email")),
            maintainer=known(info.get("maintainer")),
            maintainer_email=known(info.get("maintainer_email")),
            license=license_of(info.get("license_expression"), info.get("license"), info.get("classifiers")),
            requires_python=known(info.get("requires_python")),
            requires_dist=string_list(info.get("requires_dist") or []),
            classifiers=string_list(info.get("classifiers") or []),
            project_urls=project_urls,
            repository_url=repository_of(project_urls, home_page),
            home_page=home_page,
            upload_time=first_upload(latest_files, "upload_time_iso_8601", "upload_time"),
            release_count=len(files_by_version) if releases is not None else None,
            yanked_releases=yanked_of(files_by_version, "yanked", "yanked_reason"),
            vulnerabilities_count=len(vulnerabilities) if isinstance(vulnerabilities, list) else None,
            last_serial=serial if isinstance(serial, int) else last_serial,
            api="json",
        )

    @classmethod
    def from_simple_page(
        cls,
        display: str,
        files: Iterable[dict[str, Any]],
        versions: Iterable[str] | None = None,
        last_serial: int | None = None,
        core_metadata: bytes | None = None,
    ) -> PypiPackage:
        """Build the record from a simple-API project page (files as PEP 691 dicts), plus the latest
        release's core metadata (``METADATA`` file) when the mirror serves it."""
        by_version: dict[str, list[dict[str, Any]]] = {v: [] for v in versions or ()}
        for file in files:
            by_version.setdefault(file["version"], []).append(file)
        version = latest_version(by_version, yanked_key="yanked")
        fields: dict[str, Any] = {}
        if core_metadata is not None:
            fields = metadata_fields(core_metadata)
        project_urls = fields.pop("project_urls", {})
        home_page = fields.pop("home_page", None)
        if not fields.get("requires_python"):  # PEP 503 data-requires-python / PEP 691 requires-python
            fields["requires_python"] = next(
                (f["requires-python"] for f in by_version.get(version or "", []) if f.get("requires-python")), None
            )
        return cls(
            name=normalize_name(display),
            display_name=display,
            version=version,
            upload_time=first_upload(by_version.get(version or "", []), "upload-time"),
            release_count=len(by_version),
            yanked_releases=yanked_of(by_version, "yanked", "yanked_reason"),
            project_urls=project_urls,
            repository_url=repository_of(project_urls, home_page),
            home_page=home_page,
            last_serial=last_serial,
            api="simple",
            **fields,
        )


def known(value: Any, limit: int | None = None) -> str | None:
    """A string field, with PyPI's ``UNKNOWN`` placeholders and blanks as None."""
    value = text(value, limit)
    return None if value is None or value.lower() in _UNKNOWN else value


def license_of(expression: Any, license_field: Any, classifiers: Any) -> str | None:
    """PEP 639 ``license_expression`` (canonical SPDX form, by ``packaging``); else the license field (its
    first line: some hold the whole text); else the license classifier's last part."""
    if value := known(expression):
        try:
            return canonicalize_license_expression(value)
        except InvalidLicenseExpression:
            return value[:LICENSE_LIMIT]  # kept as published: a query can still find it
    if value := known(license_field):
        first_line = value.splitlines()[0].strip()
        return first_line[:LICENSE_LIMIT] if first_line else None
    for classifier in string_list(classifiers or []):
        if classifier.startswith("License ::") and classifier.count("::") >= 2:
            return classifier.rsplit("::", 1)[1].strip()
    return None


def repository_of(project_urls: dict[str, str], home_page: str | None) -> str | None:
    """The repository URL from the project URLs (by label, then any git host URL), else the home page."""
    labelled = {label.strip().lower(): url for label, url in project_urls.items()}
    candidates = [labelled[label] for label in _REPOSITORY_LABELS if label in labelled]
    candidates += [*project_urls.values(), *([home_page] if home_page else [])]
    for url in candidates:
        normalized = normalize_repository_url(url)
        if is_git_host_url(normalized):
            return normalized
    return None


def _parse(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _release_yanked(files: list[dict[str, Any]], yanked_key: str) -> bool:
    return bool(files) and all(bool(f.get(yanked_key)) for f in files)


def latest_version(files_by_version: dict[str, list[dict[str, Any]]], yanked_key: str = "yanked") -> str | None:
    """The latest non-yanked final release; else the latest non-yanked one; else the latest."""
    parsed = [(v, _parse(v)) for v in files_by_version]
    valid = [(v, p) for v, p in parsed if p is not None]
    live = [(v, p) for v, p in valid if not _release_yanked(files_by_version[v], yanked_key)]
    for pool in ([(v, p) for v, p in live if not p.is_prerelease and not p.is_devrelease], live, valid):
        if pool:
            return max(pool, key=lambda item: item[1])[0]
    return next(iter(files_by_version), None)


def yanked_of(
    files_by_version: dict[str, list[dict[str, Any]]], yanked_key: str, reason_key: str
) -> list[YankedRelease]:
    out = []
    for version, files in files_by_version.items():
        if _release_yanked(files, yanked_key):
            reasons = [
                f.get(reason_key) or (f.get(yanked_key) if isinstance(f.get(yanked_key), str) else None) for f in files
            ]
            out.append(YankedRelease(version=version, reason=next((text(r) for r in reasons if text(r)), None)))
    return sorted(out, key=lambda y: (_parse(y.version) or Version("0"), y.version))


def first_upload(files: list[dict[str, Any]], *keys: str) -> datetime | None:
    times = [t for f in files for t in [next((parse_time(f.get(k)) for k in keys if f.get(k)), None)] if t]
    return min(times, default=None)


def metadata_fields(raw: bytes) -> dict[str, Any]:
    """Record fields from a core metadata file (a wheel's ``METADATA``), parsed by ``packaging``.
    ``ValueError`` for a body that is not core metadata (no ``Metadata-Version`` and ``Name``)."""
    fields, _unparsed = parse_email(raw)
    if not fields.get("metadata_version") or not fields.get("name"):
        raise ValueError("not a core metadata file (no Metadata-Version and Name)")
    classifiers = fields.get("classifiers") or []
    return {
        "summary": known(fields.get("summary"), SUMMARY_LIMIT),
        "author": known(fields.get("author")),
        "author_email": known(fields.get("author_email")),
        "maintainer": known(fields.get("maintainer")),
        "maintainer_email": known(fields.get("maintainer_email")),
        "license": license_of(fields.get("license_expression"), fields.get("license"), classifiers),
        "requires_python": known(fields.get("requires_python")),
        "requires_dist": [str(v).strip() for v in fields.get("requires_dist") or []],
        "classifiers": [str(v).strip() for v in classifiers],
        "project_urls": {k.strip(): v.strip() for k, v in (fields.get("project_urls") or {}).items() if v.strip()},
        "home_page": known(fields.get("home_page")),
    }
