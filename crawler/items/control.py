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
