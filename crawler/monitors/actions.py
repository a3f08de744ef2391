"""What happens after the monitors of a run: a log summary always; a webhook post and an email when configured.

The webhook and email actions run when a monitor failed (and on success too with
``MONITOR_NOTIFY_ON_SUCCESS``). Their message is built from an allow-list of numeric stats, the monitors'
own assertion messages, the spider and the run id, and every value of a secret-looking setting is
masked in it, so no token, password or signed URL can leave in an alert. They are synchronous (Spidermon
runs actions in the ``spider_closed`` handler) and bounded by ``MONITOR_ALERT_TIMEOUT``.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from scrapy.crawler import Crawler
from spidermon import settings as spidermon_settings
from spidermon.core.actions import Action
from spidermon.exceptions import SkipAction

logger = logging.getLogger(__name__)

DEFAULT_ALERT_TIMEOUT = 10.0
#: the stats an alert may show, with their labels: numbers and the finish reason, nothing user-supplied
KEY_STATS = (
    ("finish_reason", "finish reason"),
    ("item_scraped_count", "records"),
    ("store/records", "stored"),
    ("downloader/response_count", "responses"),
    ("dead_letters", "dead letters"),
    ("log_count/ERROR", "errors"),
    ("elapsed_time_seconds", "elapsed s"),
)
#: the counters an alert shows even when the run never set them (a missing counter is a zero)
ZERO_STATS = ("item_scraped_count", "dead_letters", "log_count/ERROR")
# the names crawler/spiders/base.py keeps out of ingestion_runs.args, plus Scrapy's MAIL_PASS and webhook URLs
SECRET_NAME = re.compile(r"token|secret|password|passwd|pass$|key|auth|credential|webhook", re.IGNORECASE)
MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would mask half the message and are no secret


class AlertFailed(Exception):
    """An alert could not be delivered (the message says why, without the endpoint or credentials)."""


@dataclass
class RunReport:
    """What an alert says about one run."""

    spider: str
    source: str
    run_id: str
    passed: bool
    monitors: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (monitor, why)
    skipped: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    backlog: Any = None

    @property
    def outcome(self) -> str:
        return "all monitors passed" if self.passed else f"{len(self.failed)} of {self.monitors} monitors failed"

    @property
    def title(self) -> str:
        return f"[scrapy-ingestion] {self.spider} run {self.run_id}: {self.outcome}"

    @property
    def subject(self) -> str:
        # short enough not to be folded (the run id is in the body), and the same for every run of a
        # spider with the same outcome, so mail clients thread them
        return f"[scrapy-ingestion] {self.spider}: {self.outcome}"

    def text(self) -> str:
        lines = [self.title]
        lines += [f"- {name}: {why}" for name, why in self.failed]
        shown = [f"{label} {self.stats[key]}" for key, label in KEY_STATS if key in self.stats]
        if self.backlog is not None:
            shown.append(f"backlog {self.backlog}")
        lines.append(", ".join(shown) + f" (host {socket.gethostname()})")
        return "\n".join(lines)


def secret_values(crawler: Crawler) -> list[str]:
    """Values of the settings whose name looks secret (webhook URL, SMTP password, tokens, keys)."""
    values: set[str] = set()
    for name, value in crawler.settings.items():
        if isinstance(value, str) and SECRET_NAME.search(name):
            values.update(part.strip() for part in value.split(","))
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def build_report(result: Any, data: Any) -> RunReport:
    """Summarize Spidermon's ``result`` of one suite run and the run's ``data`` (stats, spider, crawler)."""
    spider = data.spider
    stats = {**dict.fromkeys(ZERO_STATS, 0), **data.stats}
    source = str(getattr(spider, "source", None) or spider.name)
    statuses = spidermon_settings.MONITOR.STATUS
    failed = []
    for item in result.monitor_results:
        if item.status in (statuses.FAILURE, statuses.ERROR):
            # a failure carries its assertion message; an error only a traceback, whose last line says what
            why = item.reason or next(iter((item.error or "").strip().splitlines()[-1:]), "error")
            failed.append((item.item.monitor_name, why[:300]))
    return RunReport(
        spider=spider.name,
        source=source,
        run_id=str(stats.get("run_id") or data.crawler.settings.get("RUN_ID") or "?"),
        passed=not failed,
        monitors=len(result.monitor_results),
        failed=failed,
        skipped=sum(1 for item in result.monitor_results if item.status == statuses.SKIPPED),
        stats={key: _plain(stats[key]) for key, _ in KEY_STATS if key in stats},
        backlog=stats.get(f"{source}/backlog"),
    )


def _plain(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value if isinstance(value, int) else str(value)


class PlatformAction(Action):
    """An action that knows its crawler (Spidermon builds actions with ``from_crawler``)."""

    def __init__(self, crawler: Crawler | None = None) -> None:
        super().__init__()
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PlatformAction:
        return cls(crawler)

    @property
    def _crawler(self) -> Crawler:
        # the crawler the suite was built with, else the one of the run's data (unit tests build suites bare)
        return self.crawler or self.data.crawler

    def report(self) -> RunReport:
        return build_report(self.result, self.data)

    def message(self) -> tuple[RunReport, str]:
        report = self.report()
        return report, mask(report.text(), secret_values(self._crawler))


class LogSummary(PlatformAction):
    """Always: one log line with the outcome, and the outcome in the stats (``spidermon/...``)."""

    def run_action(self) -> None:
        report, text = self.message()
        stats = self._crawler.stats
        if stats is not None:
            stats.set_value("spidermon/monitors", report.monitors)
            stats.set_value("spidermon/monitors/failed", len(report.failed))
            stats.set_value("spidermon/monitors/skipped", report.skipped)
            stats.set_value("spidermon/result", "passed" if report.passed else "failed")
        if report.passed:
            logger.info("monitors: %d passed, %d skipped", report.monitors - report.skipped, report.skipped)
        else:
            # a warning, not an error: Spidermon already logs each failure as an error
            logger.warning("monitors failed: %s", text.replace("\n", " | "))


class Notifier(PlatformAction):
    """Base of the alerts: on failure always, on success only with MONITOR_NOTIFY_ON_SUCCESS."""

    def run_action(self) -> None:
        settings = self._crawler.settings
        if self.monitors_passed and not self.monitors_failed and not settings.getbool("MONITOR_NOTIFY_ON_SUCCESS"):
            raise SkipAction("MONITOR_NOTIFY_ON_SUCCESS is off")
        self.notify(*self.message())

    def notify(self, report: RunReport, text: str) -> None:
        raise NotImplementedError

    @property
    def timeout(self) -> float:
        return self._crawler.settings.getfloat("MONITOR_ALERT_TIMEOUT", DEFAULT_ALERT_TIMEOUT)


class WebhookAlert(Notifier):
    """POST ``{"text": …}`` to MONITOR_WEBHOOK_URL (Slack incoming webhooks and their look-alikes)."""

    def notify(self, report: RunReport, text: str) -> None:
        url = self._crawler.settings.get("MONITOR_WEBHOOK_URL")
        if not url:
            raise SkipAction("MONITOR_WEBHOOK_URL is not set")
        if urlsplit(url).scheme not in ("http", "https"):
            raise SkipAction("MONITOR_WEBHOOK_URL is not an http(s) URL")
        request = urllib.request.Request(
            url,
            data=json.dumps({"text": text}).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "scrapy-ingestion-monitor"},
            method="POST",
        )
        # the URL is a credential (Slack's carries its token): failures name the host only, and
        # `from None` keeps urllib's own exception (and any URL in it) out of the logged traceback
        host = urlsplit(url).hostname
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise AlertFailed(f"webhook at {host} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise AlertFailed(f"webhook at {host} unreachable: {type(exc).__name__}") from None
        if self._crawler.stats is not None:
            self._crawler.stats.set_value("spidermon/alerts/webhook", status)
        logger.info("monitor alert posted to the webhook at %s (HTTP %d)", host, status)


class EmailAlert(Notifier):
    """Email the report to MONITOR_EMAIL_TO through MONITOR_SMTP_HOST (stdlib smtplib)."""

    def notify(self, report: RunReport, text: str) -> None:
        settings = self._crawler.settings
        to = [address.strip() for address in settings.getlist("MONITOR_EMAIL_TO") if address.strip()]
        if not to:
            raise SkipAction("MONITOR_EMAIL_TO is not set")
        host = settings.get("MONITOR_SMTP_HOST") or "localhost"
        use_ssl = settings.getbool("MONITOR_SMTP_SSL")
        port = settings.getint("MONITOR_SMTP_PORT") or (465 if use_ssl else 25)
        message = EmailMessage()
        message["Subject"] = mask(report.subject, secret_values(self._crawler))
        message["From"] = settings.get("MONITOR_EMAIL_FROM") or f"scrapy-ingestion@{socket.gethostname()}"
        message["To"] = ", ".join(to)
        message.set_content(text + "\n")
        try:
            if use_ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(host, port, timeout=self.timeout)
            with smtp:
                if settings.getbool("MONITOR_SMTP_STARTTLS"):
                    smtp.starttls(context=ssl.create_default_context())
                if settings.get("MONITOR_SMTP_USER"):
                    smtp.login(settings["MONITOR_SMTP_USER"], settings.get("MONITOR_SMTP_PASSWORD") or "")
                refused = smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            # no chained exception: smtplib's may quote the server's answer to the login
            raise AlertFailed(f"email via {host}:{port} failed: {type(exc).__name__}") from None
        if self._crawler.stats is not None:
            self._crawler.stats.set_value("spidermon/alerts/email", len(to) - len(refused))
        logger.info("monitor alert emailed to %d recipient(s) via %s:%d", len(to) - len(refused), host, port)
