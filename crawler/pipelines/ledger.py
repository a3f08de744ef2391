"""Which control items (cursor checkpoints, distributed acknowledgements) are safe to apply, given how
far the stored data reaches."""

from __future__ import annotations

from collections import deque

from crawler.items.control import Checkpoint, ControlItem


class CursorLedger:
    """Holds control items until every record received before them is durably stored.

    Records and control items are numbered in arrival order (*receipts*). An item that arrived
    after receipt ``n`` may be applied once the *watermark* — the highest receipt below which every
    record is stored — reaches ``n``.
    """

    def __init__(self) -> None:
        self._pending: deque[tuple[int, ControlItem]] = deque()

    def add(self, item: ControlItem, after_receipt: int) -> None:
        self._pending.append((after_receipt, item))

    def ready(self, watermark: int) -> list[ControlItem]:
        """Items now covered by stored data, in arrival order; of the checkpoints only the newest per
        (source, key) is kept."""
        ready: list[ControlItem] = []
        newest: dict[tuple[str, str], Checkpoint] = {}
        while self._pending and self._pending[0][0] <= watermark:
            item = self._pending.popleft()[1]
            if isinstance(item, Checkpoint):
                newest.pop((item.source, item.key), None)
                newest[(item.source, item.key)] = item
            else:
                ready.append(item)
        return ready + list(newest.values())

    def __len__(self) -> int:
        return len(self._pending)
