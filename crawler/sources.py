"""The declaration of a source, and the discovery of every source package.

A source is one package, ``crawler/spiders/<name>/``, whose ``source`` module holds ``SOURCE``, a
:class:`Source`: its namespaces (record types, each with its key), modes, crawl policy, settings (type,
default, secret or not), schedule, and its own components (downloader middlewares, download handlers
for a transport of its own). Everything the core needs to know of a source comes from here: the spider
applies it (:class:`crawler.spiders.base.SourceSpider`), and the README's settings tables, the deploy
files and ``scrapy status`` are generated from it (:mod:`crawler.docs`). Nothing outside the package
names the source (``tests/test_sources.py`` checks it).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawler.config import SettingError
from crawler.policy import SourcePolicy

if TYPE_CHECKING:
    from crawler.items.base import Record

#: the package that holds one sub-package per source
SOURCES_PACKAGE = "crawler.spiders"


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)


def _parse_list(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


_CREDENTIAL_QUERY = re.compile(r"(?:^|&)(?:access_token|token|api_key|apikey|key|secret|password)=", re.IGNORECASE)


def _carries_credentials(url: str) -> bool:
    """A user:password@ part, or a token in the query string."""
    parts = urlsplit(url.strip())
    return bool(parts.username or parts.password or _CREDENTIAL_QUERY.search(parts.query))


def _parse_url(value: Any) -> str:
    text = str(value).strip()
    if not text.startswith(("http://", "https://")):
        raise ValueError(value)
    return text


#: setting type -> (what is expected, parser)
SETTING_TYPES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "str": ("a string", lambda v: str(v)),
    "url": ("an http(s):// URL", _parse_url),
    "int": ("an integer", lambda v: int(str(v).strip())),
    "float": ("a number", lambda v: float(str(v).strip())),
    "bool": ("true or false", _parse_bool),
    "list": ("a comma-separated list", _parse_list),
}


@dataclass(frozen=True)
class Setting:
    """One setting of a source: read from ``-s NAME=…``, the project settings, or the environment."""

    name: str
    help: str
    type: str = "str"
    #: None: unset (the source then derives it, or a mode that needs it says so)
    default: Any = None
    #: never logged, never recorded, never written into generated files
    secret: bool = False
    choices: tuple[str, ...] = ()
    #: the smallest value a number may take
    minimum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in SETTING_TYPES:
            raise TypeError(f"{self.name}: unknown setting type {self.type!r}")

    def parse(self, raw: Any) -> Any:
        """The typed value of ``raw``, or :class:`SettingError` naming the setting and what it expects."""
        if raw is None or (isinstance(raw, str) and raw.strip() == "" and self.type != "list"):
            return self.default
        if self.type == "url" and _carries_credentials(str(raw)):
            # never echoed: the value holds a secret
            raise SettingError(
                self.name, "a URL without credentials (tokens go in the source's secret settings)", "***"
            )
        expected, parser = SETTING_TYPES[self.type]
        if self.choices:
            expected = "one of " + ", ".join(self.choices)
        try:
            value = parser(raw)
        except (TypeError, ValueError):
            raise SettingError(self.name, expected, "***" if self.secret else raw) from None
        if self.choices and value not in self.choices:
            raise SettingError(self.name, expected, value)
        if self.minimum is not None and value < self.minimum:
            raise SettingError(self.name, f"{expected} >= {self.minimum:g}", value)
        return value


@dataclass(frozen=True)
class Schedule:
    """When the scheduled crawl of a source runs (UTC) and with which spider arguments."""

    #: cron fields "minute hour day-of-month month day-of-week"
    cron: str
    arguments: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def on_calendar(self) -> str:
        """The same time as a systemd ``OnCalendar=`` value (daily schedules only)."""
        minute, hour, dom, month, dow = self.cron.split()
        if (dom, month, dow) != ("*", "*", "*") or not (minute.isdigit() and hour.isdigit()):
            raise ValueError(f"only daily schedules become systemd timers: {self.cron!r}")
        return f"*-*-* {int(hour):02d}:{int(minute):02d}:00 UTC"


@dataclass(frozen=True)
class Source:
    """Everything about a source that is not code: see the module docstring."""

    name: str
    #: one line, for generated documentation and ``scrapy status``
    title: str
    records: tuple[type[Record], ...]
    policy: SourcePolicy
    settings: tuple[Setting, ...] = ()
    #: the spider's modes (``-a mode=…``); ``worker`` (a distributed helper) is every spider's
    modes: tuple[str, ...] = ()
    schedule: Schedule | None = None
    #: the source's own downloader middlewares (import path -> order), added to the project's
    downloader_middlewares: Mapping[str, int] = field(default_factory=dict)
    #: the source's own transports (URL scheme -> download handler import path)
    download_handlers: Mapping[str, str] = field(default_factory=dict)

    def raw_value(self, settings: Mapping[str, Any] | Any, name: str) -> Any:
        """A setting as given: Scrapy settings (command line, project) first, then the environment."""
        value = settings.get(name)
        if value is None or value == "":
            value = os.environ.get(name)
        return value

    def read_settings(self, settings: Mapping[str, Any] | Any) -> dict[str, Any]:
        """Every declared setting, typed and checked: one :class:`SettingError` for the first bad one."""
        return {s.name: s.parse(self.raw_value(settings, s.name)) for s in self.settings}


@cache
def all_sources() -> dict[str, Source]:
    """Every source package's declaration, by name (importing it registers its record types)."""
    package = importlib.import_module(SOURCES_PACKAGE)
    sources: dict[str, Source] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg:
            continue
        declaration = getattr(importlib.import_module(f"{SOURCES_PACKAGE}.{module.name}.source"), "SOURCE", None)
        if not isinstance(declaration, Source):
            raise TypeError(f"{SOURCES_PACKAGE}.{module.name}.source must define SOURCE = Source(...)")
        if declaration.name != module.name:
            raise TypeError(f"source {declaration.name!r} must live in {SOURCES_PACKAGE}.{declaration.name}")
        sources[declaration.name] = declaration
    return sources
