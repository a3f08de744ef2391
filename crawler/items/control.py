"""Control items: yielded by spiders to steer the pipelines; never stored as records."""

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
class UnitDone:
    """Unit ``unit`` (a package) of page ``page`` (e.g. of a feed) is yielded, records first.

    In one process the store pipeline completes the page's unit on arrival (checkpoints released then
    follow the unit's records); in a distributed crawl it takes effect once the records before it are
    stored, in Redis (:mod:`crawler.distributed`).
    """

    source: str
    page: int | str
    unit: str


@dataclass(frozen=True)
class LeaseDone:
    """Distributed crawls: the work of a leased request is yielded; drop the lease once it is stored."""

    lease: str


#: control items the store pipeline holds back until the records before them are stored
ControlItem = Checkpoint | UnitDone | LeaseDone
