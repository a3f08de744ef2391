"""``scrapy serve``: the read-only SQL API (:mod:`crawler.query.api`) over the stored data and the status
dashboard (:mod:`crawler.dashboard`), with uvicorn."""

from __future__ import annotations

import argparse
import copy
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": True}

    def syntax(self) -> str:
        return "[options]"

    def short_desc(self) -> str:
        return "Serve the read-only SQL API and the status dashboard"

    def long_desc(self) -> str:
        return (
            "Serve POST /query, GET /namespaces, GET /catalog/<namespace>, GET /health and the OpenAPI docs "
            "(/docs) over the data in STORAGE_URI, and the status dashboard at / (plots of every source's runs, "
            "stored records, freshness, cursors, dead letters and, with REDIS_URL, its distributed crawl, from "
            "META_DB_URL and the catalogs). Every route but /health needs a key from QUERY_API_KEYS "
            "(header X-API-Key or Authorization: Bearer; a browser asks for it, as the password). "
            "Limits: QUERY_ROW_CAP, QUERY_TIMEOUT_SECONDS, QUERY_WORKERS, QUERY_MEMORY_LIMIT_MB, "
            "QUERY_WORKER_MEMORY_MB."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--host", default=None, help="interface to listen on (default: QUERY_API_HOST, 127.0.0.1)")
        parser.add_argument("--port", type=int, default=None, help="TCP port (default: QUERY_API_PORT, 8787)")
        parser.add_argument(
            "--insecure-no-auth",
            action="store_true",
            help="serve without API keys (anyone who can reach the port can query)",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args:
            raise UsageError("serve takes no arguments")
        assert self.settings is not None
        import uvicorn  # only this command needs it

        # imported here: every scrapy process loads every command module
        from crawler.query.api import ConfigError, create_app_from_settings

        try:
            app, config = create_app_from_settings(
                self.settings,
                host=opts.host,
                port=opts.port,
                allow_no_auth=True if opts.insecure_no_auth else None,
            )
        except ConfigError as exc:
            raise UsageError(str(exc), print_help=False) from None
        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_config=_log_config(self.settings.get("LOG_LEVEL", "INFO")),
            server_header=False,  # no need to tell the world what runs here
            # Behind a reverse proxy, pass --forwarded-allow-ips through uvicorn directly instead.
            proxy_headers=False,
        )


def _log_config(level: str) -> dict[str, Any]:
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # Our own loggers (the query log, worker restarts) through uvicorn's handler; the access log
    # prints the request line only, never headers, so keys stay out of it.
    config["loggers"]["crawler"] = {"handlers": ["default"], "level": str(level).upper(), "propagate": False}
    return config
