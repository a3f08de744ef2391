"""The alert actions against loopback receivers: a webhook endpoint and an SMTP server."""

from __future__ import annotations

import socket
import time

import pytest

from tests.monitors import CLEAN, SmtpSink, WebhookReceiver, run_suite

FAILING = {**CLEAN, "item_scraped_count": 0, "dead_letters": 3, "dead_letters/http_404": 3}
SECRET = "T0KEN-in-the-path-0123456789"


def action_results(result) -> dict[str, tuple[str, str | None]]:
    items = result.monitors_failed_action_results + result.monitors_passed_action_results
    return {item.item.name: (item.status, item.error or item.reason) for item in items if item.status != "SKIPPED"}


def test_webhook_posts_once_on_failure_without_secrets():
    with WebhookReceiver().serve() as hook:
        result, statuses, stats = run_suite(
            FAILING,
            {"MONITOR_WEBHOOK_URL": f"{hook.url}/services/{SECRET}", "GITHUB_TOKEN": "ghp_never_in_alerts"},
        )
    assert [name for name, status in statuses.items() if status == "FAIL"] == ["Item count", "Error rate"]
    assert len(hook.posts) == 1 and hook.paths == [f"/services/{SECRET}"]
    (post,) = hook.posts
    assert set(post) == {"text"}
    text = post["text"]
    assert text.startswith("[scrapy-ingestion] npm run run-1: 2 of 6 monitors failed")
    assert "- Item count: 0 records scraped, expected at least 1" in text
    assert "- Error rate: error rate 100.0% > 5.0%" in text
    assert "records 0" in text and "dead letters 3" in text and "finish reason finished" in text
    assert SECRET not in text and "ghp_never_in_alerts" not in text
    assert stats["spidermon/alerts/webhook"] == 200
    assert action_results(result)["WebhookAlert"] == ("OK", None)


def test_webhook_on_success_only_when_asked():
    with WebhookReceiver().serve() as hook:
        run_suite(CLEAN, {"MONITOR_WEBHOOK_URL": hook.url})
        assert hook.posts == []
        run_suite(CLEAN, {"MONITOR_WEBHOOK_URL": hook.url, "MONITOR_NOTIFY_ON_SUCCESS": "true"})
    (post,) = hook.posts
    assert post["text"].startswith("[scrapy-ingestion] npm run run-1: all monitors passed")


def test_a_failing_webhook_is_an_action_error_that_names_no_url():
    with WebhookReceiver(status=500).serve() as hook:
        result, _, _ = run_suite(FAILING, {"MONITOR_WEBHOOK_URL": f"{hook.url}/{SECRET}"})
    status, error = action_results(result)["WebhookAlert"]
    assert status == "ERROR" and "answered HTTP 500" in error and SECRET not in error

    with socket.socket() as closed:  # a port nothing listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    result, _, _ = run_suite(
        FAILING, {"MONITOR_WEBHOOK_URL": f"http://127.0.0.1:{port}/{SECRET}", "MONITOR_ALERT_TIMEOUT": 2}
    )
    status, error = action_results(result)["WebhookAlert"]
    assert status == "ERROR" and "unreachable" in error and SECRET not in error
    assert time.monotonic() - started < 5


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
def test_email_on_failure_with_login():
    with SmtpSink(user="alerts", password="smtp-pass-0123456789").serve() as sink:
        result, _, stats = run_suite(
            FAILING,
            {
                "MONITOR_EMAIL_TO": "ops@example.test, oncall@example.test",
                "MONITOR_EMAIL_FROM": "crawler@example.test",
                "MONITOR_SMTP_HOST": "127.0.0.1",
                "MONITOR_SMTP_PORT": sink.port,
                "MONITOR_SMTP_USER": "alerts",
                "MONITOR_SMTP_PASSWORD": "smtp-pass-0123456789",
            },
        )
    assert action_results(result)["EmailAlert"] == ("OK", None)
    assert sink.logins == ["alerts"]
    assert sink.envelopes == [("crawler@example.test", ["ops@example.test", "oncall@example.test"])]
    (message,) = sink.messages
    assert message["Subject"] == "[scrapy-ingestion] npm: 2 of 6 monitors failed"
    body = message.get_content().replace("\r\n", "\n")  # SMTP line ends
    assert body.startswith("[scrapy-ingestion] npm run run-1: 2 of 6 monitors failed\n")
    assert "- Item count: 0 records scraped, expected at least 1" in body
    assert "smtp-pass-0123456789" not in message.as_string()
    assert stats["spidermon/alerts/email"] == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
def test_email_with_a_wrong_password_is_an_action_error():
    with SmtpSink(user="alerts", password="right-password").serve() as sink:
        result, _, _ = run_suite(
            FAILING,
            {
                "MONITOR_EMAIL_TO": "ops@example.test",
                "MONITOR_SMTP_HOST": "127.0.0.1",
                "MONITOR_SMTP_PORT": sink.port,
                "MONITOR_SMTP_USER": "alerts",
                "MONITOR_SMTP_PASSWORD": "wrong-password",
            },
        )
    status, error = action_results(result)["EmailAlert"]
    assert status == "ERROR" and "SMTPAuthenticationError" in error and "wrong-password" not in error
    assert sink.messages == []
