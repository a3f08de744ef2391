from crawler.items.control import Checkpoint, LeaseDone, UnitDone
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
    first, released = checkpoints.open("100", ["a", "b"])
    assert released == []
    second, released = checkpoints.open("200", ["c"])
    assert checkpoints.outstanding == 3
    # the spider yields a unit-done item after each unit's records; back-pressure counts at once
    assert checkpoints.done(second, "c") == [UnitDone("npm", second, "c")]
    assert checkpoints.outstanding == 2
    # the store completes units as their items arrive: the later page first releases nothing
    assert checkpoints.complete(second) == []
    assert checkpoints.complete(first) == []
    assert checkpoints.complete(first) == [Checkpoint("npm", "200")]


def test_an_empty_page_is_released_at_once_unless_blocked():
    checkpoints = OrderedCheckpoints("npm")
    assert checkpoints.open("5", [])[1] == [Checkpoint("npm", "5")]
    busy, _ = checkpoints.open("6", ["x"])
    assert checkpoints.open("7", [])[1] == []
    assert checkpoints.complete(busy) == [Checkpoint("npm", "7")]


def test_acknowledgements_wait_for_the_watermark_and_are_never_collapsed():
    ledger = CursorLedger()
    ledger.add(UnitDone("npm", "p1", "a"), 1)
    ledger.add(LeaseDone("7"), 1)
    ledger.add(UnitDone("npm", "p1", "b"), 3)
    assert ledger.ready(0) == []
    assert ledger.ready(2) == [UnitDone("npm", "p1", "a"), LeaseDone("7")]
    assert ledger.ready(3) == [UnitDone("npm", "p1", "b")]
