"""The close-of-run monitors, run by Spidermon's own runner on made-up stats (no crawl)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from scrapy import Spider
from scrapy.settings import Settings

from crawler.monitors import error_rate
from crawler.monitors.actions import build_report, mask, secret_values
from tests.monitors import CLEAN, run_suite


def test_a_clean_run_passes_and_the_cursor_check_is_skipped_without_a_cursor():
    result, statuses, stats = run_suite(CLEAN)
    assert statuses == {
        "Finish Reason Monitor": "OK",
        "Item count": "OK",
        "Error rate": "OK",
        "Dead letters": "OK",
        "Cursor lag": "SKIPPED",
        "Storage": "OK",
    }
    assert stats["spidermon/result"] == "passed" and stats["spidermon/monitors/failed"] == 0
    # the notifiers ran on success only to skip themselves
    assert [a.status for a in result.monitors_passed_action_results] == ["SKIPPED", "SKIPPED"]


def test_error_rate_is_errors_plus_dead_letters_over_outcomes():
    assert error_rate({"item_scraped_count": 95, "dead_letters": 5}) == (0.05, 0, 5, 95)
    assert error_rate({"log_count/ERROR": 3}) == (3.0, 3, 0, 0)  # errors and nothing done: > 100 %
    assert error_rate({}) == (0.0, 0, 0, 0)
    # exactly at the threshold passes, one more error fails
    assert run_suite({**CLEAN, "item_scraped_count": 95, "dead_letters": 5})[1]["Error rate"] == "OK"
    result, statuses, stats = run_suite({**CLEAN, "item_scraped_count": 95, "dead_letters": 5, "log_count/ERROR": 1})
    assert statuses["Error rate"] == "FAIL" and stats["spidermon/result"] == "failed"
    report = build_report(result, SimpleNamespace(spider=Spider(name="npm"), stats=CLEAN, crawler=None))
    assert report.failed == [
        ("Error rate", "error rate 6.0% > 5.0%: (1 errors + 5 dead letters) / (95 records + 5 dead letters)")
    ]
    assert run_suite({**CLEAN, "dead_letters": 50}, {"MONITOR_MAX_ERROR_RATE": 0.5})[1]["Error rate"] == "OK"


def test_min_items_threshold_precedence():
    empty = {**CLEAN, "item_scraped_count": 0}
    assert run_suite(empty)[1]["Item count"] == "FAIL"  # the default minimum is 1
    assert run_suite({**CLEAN, "item_scraped_count": 1})[1]["Item count"] == "OK"
    # a spider attribute overrides the project setting (e.g. an incremental run may find nothing new)…
    assert run_suite(empty, {"MONITOR_MIN_ITEMS": 10}, monitor_min_items=0)[1]["Item count"] == "OK"
    assert run_suite(CLEAN, {}, monitor_min_items=500)[1]["Item count"] == "FAIL"
    # …and -s on the command line overrides both
    assert run_suite(empty, cmdline={"MONITOR_MIN_ITEMS": "0"}, monitor_min_items=5)[1]["Item count"] == "OK"
    result, statuses, _ = run_suite(CLEAN, cmdline={"MONITOR_MIN_ITEMS": "201"}, monitor_min_items=0)
    assert statuses["Item count"] == "FAIL"
    assert result.monitors_failed_results[0].reason == "200 records scraped, expected at least 201"


def test_dead_letters_absolute_or_proportional():
    many = {**CLEAN, "item_scraped_count": 100_000, "dead_letters": 101, "dead_letters/invalid_json": 100}
    many["dead_letters/http_404"] = 1
    result, statuses, _ = run_suite(many)
    assert statuses["Dead letters"] == "FAIL" and statuses["Error rate"] == "OK"
    assert result.monitors_failed_results[0].reason == "101 dead letters > 100 allowed (invalid_json 100, http_404 1)"
    assert run_suite(many, {"MONITOR_MAX_DEAD_LETTER_RATIO": 0.01})[1]["Dead letters"] == "OK"  # 1,000 allowed
    assert run_suite(many, {"MONITOR_MAX_DEAD_LETTERS": 200})[1]["Dead letters"] == "OK"


def test_cursor_lag_uses_the_source_backlog():
    assert run_suite({**CLEAN, "npm/backlog": 20_000})[1]["Cursor lag"] == "FAIL"
    assert run_suite({**CLEAN, "npm/backlog": 20_000}, {"MONITOR_MAX_CURSOR_LAG": 50_000})[1]["Cursor lag"] == "OK"
    assert run_suite({**CLEAN, "npm/backlog": 0})[1]["Cursor lag"] == "OK"
    # another source's backlog is not this spider's
    assert run_suite({**CLEAN, "pypi/backlog": 20_000})[1]["Cursor lag"] == "SKIPPED"


@pytest.mark.parametrize(
    ("reason", "expected", "status"),
    [
        ("finished", None, "OK"),
        ("shutdown", None, "FAIL"),
        ("npm_seq_reset", None, "FAIL"),
        ("closespider_timeout", "finished,closespider_timeout", "OK"),
    ],
)
def test_finish_reason(reason: str, expected: str | None, status: str):
    settings = {"SPIDERMON_EXPECTED_FINISH_REASONS": expected} if expected else {}
    assert run_suite({**CLEAN, "finish_reason": reason}, settings)[1]["Finish Reason Monitor"] == status


def test_alert_text_masks_secret_settings(caplog: pytest.LogCaptureFixture):
    settings = Settings(
        {"GITHUB_TOKENS": "ghp_first_token,ghp_second_token", "MONITOR_WEBHOOK_URL": "https://h/T/B/s3cr3t"}
    )
    settings.set("MONITOR_SMTP_PASSWORD", "hunter2hunter2")
    crawler = SimpleNamespace(settings=settings)
    secrets = secret_values(crawler)  # type: ignore[arg-type]
    assert {"ghp_first_token", "ghp_second_token", "https://h/T/B/s3cr3t", "hunter2hunter2"} <= set(secrets)
    assert mask("a ghp_second_token and hunter2hunter2", secrets) == "a *** and ***"
    # a secret that found its way into a stat the alert shows is masked in the alert (here: the log's)
    with caplog.at_level("WARNING", logger="crawler.monitors.actions"):
        _, statuses, _ = run_suite(
            {**CLEAN, "finish_reason": "closed by ghp_second_token"}, {"GITHUB_TOKENS": "ghp_second_token"}
        )
    assert statuses["Finish Reason Monitor"] == "FAIL"
    (summary,) = [r.getMessage() for r in caplog.records if r.name == "crawler.monitors.actions"]
    assert "finish reason closed by ***" in summary and "ghp_second_token" not in summary


def test_a_batch_that_could_not_be_stored_fails_the_run():
    assert run_suite({**CLEAN, "store/batch_failures": 1, "store/records": 200})[1]["Storage"] == "FAIL"
    # records scraped into a batch that never reached storage (an idle flush that failed)
    _, statuses, stats = run_suite({**CLEAN, "store/records": 150})
    assert statuses["Storage"] == "FAIL" and stats["spidermon/result"] == "failed"
