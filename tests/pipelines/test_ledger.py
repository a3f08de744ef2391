from crawler.extensions.cursors import LocalPages
from crawler.items.control import Checkpoint, WorkDone
from crawler.pipelines.ledger import CursorLedger


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
    pages = LocalPages("npm")
    first = pages.open("default", "100", "feed", False, ["a", "b"])
    second = pages.open("default", "200", "feed", False, ["c"])
    pages.done([second], "c", failed=False)
    assert pages.take_released() == []  # the first page still has work
    pages.done([first], "a", failed=False)
    assert pages.take_released() == []
    pages.done([first], "b", failed=False)
    assert pages.take_released() == [Checkpoint("npm", "100"), Checkpoint("npm", "200")]
    assert len(pages) == 0


def test_a_page_with_no_work_waits_for_the_pages_before_it():
    pages = LocalPages("npm")
    pages.open("default", "5", "feed", False, [])
    assert pages.take_released() == [Checkpoint("npm", "5")]
    busy = pages.open("default", "6", "feed", False, ["x"])
    pages.open("full", "", "feed", False, [])
    assert pages.take_released() == []
    pages.done([busy], "x", failed=False)
    assert pages.take_released() == [Checkpoint("npm", "6"), Checkpoint("npm", "", "full")]


def test_work_added_later_holds_the_page_and_streams_are_independent():
    pages = LocalPages("github")
    commits = pages.open("commits:o/r", "2026-01-02", "commits:o/r", True, ["page1"])
    etag = pages.open("etag:/x", '"abc"', "etag:/x", True, ["other"])
    pages.add([commits], "page2")  # the next page, yielded by the first
    pages.done([commits], "page1", failed=False)
    assert pages.take_released() == []
    pages.done([etag], "other", failed=False)
    assert pages.take_released() == [Checkpoint("github", '"abc"', "etag:/x")]  # not behind the commits
    pages.done([commits], "page2", failed=False)
    assert pages.take_released() == [Checkpoint("github", "2026-01-02", "commits:o/r")]


def test_a_failed_unit_holds_its_page_and_every_later_one_of_the_stream():
    pages = LocalPages("github")
    first = pages.open("commits:o/r", "1", "s", True, ["a"])
    second = pages.open("commits:o/r", "2", "s", True, ["b"])
    pages.done([second], "b", failed=False)
    pages.done([first], "a", failed=True)  # e.g. a commit detail request that ended as a dead letter
    assert pages.take_released() == []
    third = pages.open("commits:o/r", "3", "s", True, [])
    assert pages.take_released() == [] and third


def test_a_page_without_a_value_only_orders_its_stream():
    pages = LocalPages("pypi")
    pages.open("serial", None, "index", False, ["a"])
    pages.open("serial", "42", "index", False, [])
    assert pages.take_released() == []
    pages.done([next(iter(pages._pages))], "a", failed=False)
    assert pages.take_released() == [Checkpoint("pypi", "42", "serial")]


def test_acknowledgements_wait_for_the_watermark_and_are_never_collapsed():
    ledger = CursorLedger()
    ledger.add(WorkDone("a", ("p1",)), 1)
    ledger.add(WorkDone("l", lease="7"), 1)
    ledger.add(WorkDone("b", ("p1",)), 3)
    assert ledger.ready(0) == []
    assert ledger.ready(2) == [WorkDone("a", ("p1",)), WorkDone("l", lease="7")]
    assert ledger.ready(3) == [WorkDone("b", ("p1",))]
