"""Which cursor checkpoints are safe to save, given how far the stored data reaches."""

from __future__ import annotations

from collections import deque

from crawler.items.control import Checkpoint


class CursorLedger:
    """Holds checkpoints until every record received before them is durably stored.

    Records and checkpoints are numbered in arrival order (*receipts*). A checkpoint that arrived
    after receipt ``n`` may be saved once the *watermark* — the highest receipt below which every
    record is stored — reaches ``n``.
    """

    def __init__(self) -> None:
        self._pending: deque[tuple[int, Checkpoint]] = deque()

    def add(self, checkpoint: Checkpoint, after_receipt: int) -> None:
        self._pending.append((after_receipt, checkpoint))

    def ready(self, watermark: int) -> list[Checkpoint]:
        """Checkpoints now covered by stored data, newest per (source, key), in arrival order."""
        ready: dict[tuple[str, str], Checkpoint] = {}
        while self._pending and self._pending[0][0] <= watermark:
            checkpoint = self._pending.popleft()[1]
            ready.pop((checkpoint.source, checkpoint.key), None)
            ready[(checkpoint.source, checkpoint.key)] = checkpoint
        return list(ready.values())

    def __len__(self) -> int:
        return len(self._pending)
