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

import difflib
import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy.exceptions import UsageError

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


def _parse_date(value: Any) -> str:
    text = str(value).strip()
    datetime.fromisoformat(text.replace("Z", "+00:00"))  # raises ValueError
    return text


def _parse_file(value: Any) -> str:
    path = Path(str(value).strip())
    if not path.is_file():
        raise ValueError(value)
    return str(path)


#: argument type -> (what is expected, parser); a parser returns the value the spider receives
ARGUMENT_TYPES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "str": ("a non-empty value", lambda v: str(v)),
    "list": ("a comma-separated list", lambda v: ",".join(_parse_list(v)) or _raise(ValueError(v))),
    "int": ("an integer", lambda v: str(int(str(v).strip()))),
    "date": ("an ISO date or time (2026-11-01, 2026-11-01T08:00:00Z)", _parse_date),
    "file": ("the path of a readable file", _parse_file),
}


def _raise(exc: Exception) -> Any:
    raise exc


class ArgumentError(UsageError):
    """A spider argument (``-a name=value``) that is unknown or not of the declared type: one line,
    exit status 2, nothing fetched."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_help=False)


@dataclass(frozen=True)
class Argument:
    """One spider argument (``-a name=value``): checked before the crawl starts."""

    name: str
    help: str
    type: str = "str"
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in ARGUMENT_TYPES:
            raise TypeError(f"{self.name}: unknown argument type {self.type!r}")

    def parse(self, source: str, raw: Any) -> Any:
        """The value the spider receives, or :class:`ArgumentError` naming the argument."""
        expected, parser = ARGUMENT_TYPES[self.type]
        if self.choices:
            expected = "one of " + ", ".join(self.choices)
        text = str(raw).strip()
        try:
            if not text:
                raise ValueError(raw)
            value = parser(text)
        except (TypeError, ValueError):
            raise ArgumentError(f"{source}: -a {self.name}: expected {expected}, got {text!r}") from None
        if self.choices and value not in self.choices:
            raise ArgumentError(f"{source}: -a {self.name}: expected {expected}, got {text!r}")
        return value


#: arguments every source spider takes (see :class:`crawler.spiders.base.SourceSpider`)
SHARD_ARGUMENT = Argument("shard", "`i/n`: take the named keys whose stable hash falls in shard i of n.")


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
    #: the spider's arguments (``-a name=value``), besides ``mode`` (from ``modes``) and ``shard``
    arguments: tuple[Argument, ...] = ()
    #: prefixes of the source's setting names besides ``<NAME>_`` (e.g. those of a service it calls:
    #: ``HUNTER_``); no two sources share one
    extra_setting_prefixes: tuple[str, ...] = ()

    @property
    def setting_prefixes(self) -> tuple[str, ...]:
        return (self.name.upper() + "_", *self.extra_setting_prefixes)

    def all_arguments(self) -> tuple[Argument, ...]:
        """The declared arguments, then ``mode`` (when the source has modes) and ``shard``."""
        common: list[Argument] = []
        if self.modes:
            modes = (*self.modes, "worker")
            common.append(
                Argument("mode", "What to crawl (`worker`: take work from a distributed crawl).", choices=modes)
            )
        return (*self.arguments, *common, SHARD_ARGUMENT)

    def check_arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as the spider receives them, checked: an unknown name or a bad value is an
        :class:`ArgumentError`. Underscored names (``_job`` and others a deployment passes) are kept."""
        declared = {argument.name: argument for argument in self.all_arguments()}
        checked: dict[str, Any] = {}
        for name, value in given.items():
            if name.startswith("_"):
                checked[name] = value
                continue
            argument = declared.get(name)
            if argument is None:
                close = difflib.get_close_matches(name, declared, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ArgumentError(f"{self.name}: unknown argument -a {name}{hint}; arguments: {', '.join(declared)}")
            checked[name] = argument.parse(self.name, value)
        return checked

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
