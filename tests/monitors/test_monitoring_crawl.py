"""Monitoring end to end: real `scrapy crawl npm` runs against the fake registry, alerts to loopback receivers."""

from __future__ import annotations

import re

import pytest

from tests.monitors import SETTINGS_MODULE, SmtpSink, WebhookReceiver

pytestmark = pytest.mark.slow

HOOK_TOKEN = "T00000000/B00000000/hook-secret-0123456789"
GITHUB_SECRET = "ghp_monitoring_test_secret_0123456789"


def crawl(workspace, npm_env, *arguments: str, settings: dict | None = None, **env: str):
    """A crawl with the monitoring settings; returns (log, stats of its ingestion_runs row). Its exit
    status is 4 when a monitor failed."""
    result = workspace.crawl(
        "npm", *arguments, settings=settings, SCRAPY_SETTINGS_MODULE=SETTINGS_MODULE, check=False, **npm_env, **env
    )
    run = workspace.meta().last_runs("npm")[0]
    assert result.returncode == (4 if run["stats"].get("spidermon/result") == "failed" else 0), result.stderr[-3000:]
    run = workspace.meta().last_runs("npm")[0]
    return result.stderr, run["stats"]


def monitor_statuses(log: str) -> dict[str, str]:
    return dict(re.findall(r"\[Spidermon\] ([^/\n]+)/[^\n]*?\.\.\. (OK|FAIL|ERROR|SKIPPED)", log))


def test_a_clean_crawl_passes_and_alerts_nobody(workspace, fake_npm, npm_env):
    names = list(fake_npm.package_names())[:3]
    with WebhookReceiver().serve() as hook:
        log, stats = crawl(
            workspace, npm_env, "packages=" + ",".join(names), settings={"MONITOR_WEBHOOK_URL": hook.url}
        )
    assert hook.posts == []
    assert monitor_statuses(log) == {
        "Finish Reason Monitor": "OK",
        "Item count": "OK",
        "Error rate": "OK",
        "Dead letters": "OK",
        "Cursor lag": "SKIPPED",  # named packages: no cursor
        "Storage": "OK",
    }
    assert "monitors: 5 passed, 1 skipped" in log
    # the outcome is in the run's stats in ingestion_runs (Spidermon runs before the run recorder)
    assert stats["spidermon/result"] == "passed" and stats["spidermon/monitors/failed"] == 0


def test_dead_letters_post_one_alert_without_secrets(workspace, fake_npm, npm_env):
    healthy = next(iter(fake_npm.package_names()))
    with WebhookReceiver().serve() as hook:
        log, stats = crawl(
            workspace,
            npm_env,
            f"packages=fault-malformed,fault-truncated,{healthy}",
            settings={"MONITOR_MAX_DEAD_LETTERS": 1},
            MONITOR_WEBHOOK_URL=f"{hook.url}/services/{HOOK_TOKEN}",
            GITHUB_TOKEN=GITHUB_SECRET,
        )
    assert len(hook.posts) == 1 and hook.paths == [f"/services/{HOOK_TOKEN}"]
    text = hook.posts[0]["text"]
    run_id = stats["run_id"]
    assert text.startswith(f"[scrapy-ingestion] npm run {run_id}: 2 of 6 monitors failed")
    assert "- Error rate: error rate 66.7% > 5.0%: (0 errors + 2 dead letters) / (1 records + 2 dead letters)" in text
    assert "- Dead letters: 2 dead letters > 1 allowed (" in text
    assert "invalid_json 1" in text and "download_error 1" in text
    assert "records 1" in text and "dead letters 2" in text
    for secret in (HOOK_TOKEN, "hook-secret", GITHUB_SECRET):
        assert secret not in text and secret not in log
    assert monitor_statuses(log)["Error rate"] == "FAIL" and monitor_statuses(log)["Item count"] == "OK"
    assert stats["spidermon/result"] == "failed" and stats["spidermon/alerts/webhook"] == 200


def test_too_few_items_fails_the_item_count(workspace, fake_npm, npm_env):
    names = list(fake_npm.package_names())[:2]
    with WebhookReceiver().serve() as hook:
        log, _ = crawl(
            workspace,
            npm_env,
            "packages=" + ",".join(names),
            settings={"MONITOR_MIN_ITEMS": 5, "MONITOR_WEBHOOK_URL": hook.url},
        )
    (post,) = hook.posts
    assert "1 of 6 monitors failed" in post["text"]
    assert "- Item count: 2 records scraped, expected at least 5" in post["text"]
    assert monitor_statuses(log)["Item count"] == "FAIL" and monitor_statuses(log)["Error rate"] == "OK"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
def test_failed_monitors_are_emailed(workspace, fake_npm, npm_env):
    with SmtpSink(user="crawler", password="smtp-secret-0123456789").serve() as sink:
        log, stats = crawl(
            workspace,
            npm_env,
            "packages=fault-malformed",
            settings={"MONITOR_SMTP_HOST": "127.0.0.1", "MONITOR_SMTP_PORT": sink.port},
            MONITOR_EMAIL_TO="ops@example.test",
            MONITOR_SMTP_USER="crawler",
            MONITOR_SMTP_PASSWORD="smtp-secret-0123456789",
        )
    (message,) = sink.messages
    assert sink.envelopes[0][1] == ["ops@example.test"]
    assert message["Subject"] == "[scrapy-ingestion] npm: 2 of 6 monitors failed"
    body = message.get_content().replace("\r\n", "\n")  # SMTP line ends
    assert body.startswith(f"[scrapy-ingestion] npm run {stats['run_id']}: 2 of 6 monitors failed\n")
    assert "- Item count: 0 records scraped, expected at least 1" in body and "- Error rate:" in body
    assert "smtp-secret-0123456789" not in message.as_string() and "smtp-secret-0123456789" not in log
    assert stats["spidermon/alerts/email"] == 1


def test_cursor_lag_is_checked_when_the_feed_is_followed(workspace, fake_npm, npm_env):
    # any lag is over -1: the check must run (and fail) whenever the spider reports its backlog
    log, stats = crawl(
        workspace, npm_env, "mode=incremental", settings={"NPM_CHANGES_PAGE_SIZE": 20, "MONITOR_MAX_CURSOR_LAG": -1}
    )
    if "npm/backlog" not in stats:
        pytest.skip("the npm spider does not report npm/backlog (the proposed spider change) yet")
    assert monitor_statuses(log)["Cursor lag"] == "FAIL"
    assert f"npm/backlog = {stats['npm/backlog']} > -1" in log
    assert stats["item_scraped_count"] == fake_npm.packages
