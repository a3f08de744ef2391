"""Control items: made by the core (never by spiders) to steer the store pipeline; never stored as records."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Checkpoint:
    """A source's cursor may move to ``value`` once every record yielded before this item is stored.

    The store pipeline saves it to ``sync_state`` only after the batches holding all earlier records
    are durably written (DESIGN §3.1), so a crash never leaves a cursor ahead of the stored data.
    """

    source: str
    value: str
    key: str = "default"


@dataclass(frozen=True)
class WorkDone:
    """The work of one request (unit ``unit``) is handed on: its callback's (or errback's) output came
    before this item. It completes the unit in the cursor pages ``pages`` it belongs to
    (:mod:`crawler.extensions.cursors`), and in a distributed crawl drops its lease once what came
    before it is stored. ``failed``: the request ended as a dead letter.
    """

    unit: str
    pages: tuple[str, ...] = ()
    failed: bool = False
    lease: str | None = None


#: control items the store pipeline holds back until the records before them are stored
ControlItem = Checkpoint | WorkDone
