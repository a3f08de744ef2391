from crawler.items.control import Checkpoint
from crawler.pipelines.ledger import CursorLedger
from crawler.spiders.base import OrderedCheckpoints


def test_checkpoint_waits_for_the_watermark():
    ledger = CursorLedger()
    ledger.add(Checkpoint("npm", "10"), after_receipt=5)
    ledger.add(Checkpoint("npm", "20"), after_receipt=9)
    assert ledger.ready(4) == []
    assert ledger.ready(8) == [Checkpoint("npm", "10")]
    assert ledger.ready(100) == [Checkpoint("npm", "20")]
    assert len(ledger) == 0


def test_only_the_newest_checkpoint_per_key_is_saved():
    ledger = CursorLedger()
    ledger.add(Checkpoint("npm", "1"), 1)
    ledger.add(Checkpoint("npm", "2"), 2)
    ledger.add(Checkpoint("npm", "x", key="full"), 2)
    assert ledger.ready(2) == [Checkpoint("npm", "2"), Checkpoint("npm", "x", key="full")]


def test_pages_release_in_order_only():
    checkpoints = OrderedCheckpoints("npm")
    first, released = checkpoints.open("100", 2)
    assert released == []
    second, released = checkpoints.open("200", 1)
    assert checkpoints.outstanding == 3
    # the later page finishes first: nothing may be released yet
    assert checkpoints.done(second) == []
    assert checkpoints.done(first) == []
    assert checkpoints.done(first) == [Checkpoint("npm", "200")]
    assert checkpoints.outstanding == 0


def test_an_empty_page_is_released_at_once_unless_blocked():
    checkpoints = OrderedCheckpoints("npm")
    assert checkpoints.open("5", 0)[1] == [Checkpoint("npm", "5")]
    busy, _ = checkpoints.open("6", 1)
    assert checkpoints.open("7", 0)[1] == []
    assert checkpoints.done(busy) == [Checkpoint("npm", "7")]
