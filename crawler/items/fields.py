"""Field normalizers shared by record types of several sources (no source knowledge here)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_PERSON = re.compile(r"^\s*(?P<name>[^<(]*?)\s*(?:<(?P<email>[^>]*)>)?\s*(?:\((?P<url>[^)]*)\))?\s*$")
# git hosts whose URLs are normalized to https://host/owner/repo
GIT_HOSTS = {"github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "git.sr.ht"}
_SHORTCUT_HOSTS = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>(?!//)[^\s]+)$")
_URL = re.compile(r"^(?:[\w+.-]+://)?(?:[^@/\s]+@)?(?P<host>[\w.-]+)(?::\d+)?(?P<path>/[^\s?#]*)?")


def text(value: Any, limit: int | None = None) -> str | None:
    """A stripped string or None; non-strings are rejected rather than stringified."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    return value[:limit] if limit else value


def parse_person(value: Any) -> tuple[str | None, str | None]:
    """(name, email) from ``{"name", "email"}`` or ``"Name <email> (url)"``."""
    if isinstance(value, dict):
        return text(value.get("name")), text(value.get("email"))
    if isinstance(value, str):
        match = _PERSON.match(value)
        if match:
            return text(match["name"]), text(match["email"])
    return None, None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime; None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def string_map(value: Any) -> dict[str, str]:
    """A ``{str: str}`` mapping; other shapes (legacy arrays, nulls) give an empty mapping."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items() if v is not None}


def string_list(value: Any) -> list[str]:
    """A list of non-empty strings from a list or a comma/space separated string."""
    if isinstance(value, str):
        value = re.split(r"[,\s]+", value)
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def normalize_repository_url(value: Any) -> str | None:
    """Normalize a repository reference to ``https://host/owner/repo`` when it names a known git host.

    Accepts the forms package manifests use: ``git+https://…/o/r.git``, ``git://…``, ``git@host:o/r.git``,
    ``ssh://git@host/o/r``, ``github:o/r``, the bare ``o/r`` shorthand, and URLs that point inside a
    repository (``…/o/r/tree/main/pkg``). Other URLs are returned stripped but otherwise untouched.
    """
    if isinstance(value, dict):
        value = value.get("url")
    raw = text(value)
    if raw is None:
        return None
    host, path = None, None
    if "://" not in raw:
        shortcut, _, rest = raw.partition(":")
        if shortcut in _SHORTCUT_HOSTS and rest and "@" not in shortcut:
            host, path = _SHORTCUT_HOSTS[shortcut], rest
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", raw):
            host, path = "github.com", raw
        elif match := _SCP_LIKE.match(raw):
            host, path = match["host"], match["path"]
    if host is None:
        match = _URL.match(raw.removeprefix("git+"))
        if not match:
            return raw
        host, path = match["host"], match["path"] or ""
    host = host.lower().removeprefix("www.")
    if host not in GIT_HOSTS:
        return raw
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2:
        return raw
    owner, repo = parts[0], parts[1].removesuffix(".git")
    return f"https://{host}/{owner}/{repo}"


def is_git_host_url(url: str | None) -> bool:
    """True for a normalized ``https://<git host>/owner/repo`` URL."""
    return bool(url) and url.startswith("https://") and url.split("/")[2] in GIT_HOSTS and url.count("/") == 4
