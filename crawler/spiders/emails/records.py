"""The ``emails`` namespace: one record per company domain, with its address pattern and evidence."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from crawler.items.base import Record


class Evidence(BaseModel):
    """What one source says: the pattern it suggests, on how many addresses, how sure it is."""

    model_config = ConfigDict(frozen=True)

    #: ``stored:<selector>`` (our own stored data), ``hunter``, ``clearbit``
    source: str
    #: the template it suggests (None: it has addresses but no opinion)
    pattern: str | None = None
    #: distinct named addresses behind it (for Hunter: the addresses it returned)
    count: float = 0
    #: 0-1: the smoothed share of its pattern among its addresses
    confidence: float = 0.0


class SampleAddress(BaseModel):
    """An address that follows a template, as published by the source that gave it."""

    model_config = ConfigDict(frozen=True)

    address: str
    source: str
    #: Hunter's verification status (``valid``, ``accept_all``, ...) where it gives one
    verification: str | None = None


class EmailPattern(Record):
    """A domain's address pattern (None when the evidence is too thin: see ``candidate``)."""

    namespace = "emails"
    table = "email_patterns"
    key = ("domain",)
    version_column = "computed_at"
    domain_columns = ("domain",)

    domain: str
    #: the template, in Hunter's notation (``{first}.{last}``, ``{f}{last}``, ...); None: abstained
    pattern: str | None = None
    #: 0-1: the combined smoothed share of the best template over every source's addresses
    confidence: float = 0.0
    #: the best template even when abstaining
    candidate: str | None = None
    evidence: list[Evidence] = []
    samples: list[SampleAddress] = []
    #: addresses at the domain whose verification Hunter reports as ``valid``
    verified: int | None = None
    organization: str | None = None
    webmail: bool | None = None
    disposable: bool | None = None
    accept_all: bool | None = None
    computed_at: datetime
