"""The email-pattern source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Setting, Source
from crawler.spiders.emails.records import EmailPattern

DAY = 24 * 3600.0

SOURCE = Source(
    name="emails",
    title="Email address patterns of company domains: inferred from stored addresses, Hunter, Clearbit",
    records=(EmailPattern,),
    policy=SourcePolicy(
        concurrency=4,
        # Hunter allows 15 requests/s and 500/min: 0.13 s apart stays under both
        delay=0.13,
        retries=3,
        retry_http_codes=(429, 500, 502, 503, 504),  # Hunter's 429 (plan used up) is never retried: see middleware
        max_response_bytes=10 * 1024 * 1024,
        freshness_ttl=DAY,  # the design's 24 h cache: a domain computed within a day is not looked up again
    ),
    arguments=(
        Argument("domains", "Company domains to compute (comma-separated).", "list"),
        Argument("domains_file", "A file of company domains, one per line.", "file"),
        Argument(
            "from",
            "A source or namespace whose stored records name people (their addresses are the evidence, and "
            "their domains with enough of it are computed) or domains (those are computed).",
        ),
        Argument(
            "refresh",
            "`true`: compute the domains even if computed within the freshness TTL (24 h).",
            choices=("true", "false"),
        ),
    ),
    extra_setting_prefixes=("HUNTER_", "CLEARBIT_"),
    settings=(
        Setting("HUNTER_API_URL", "Hunter's API base, the URL that serves `v2/domain-search`.", type="url"),
        Setting(
            "HUNTER_API_KEY",
            "Hunter API key (sent as the `X-API-KEY` header, never logged or stored); unset: no Hunter look-ups.",
            secret=True,
        ),
        Setting(
            "HUNTER_MAX_REQUESTS",
            "Hunter requests one run may send at most (its credit budget; retries and pages count).",
            "int",
            100,
            minimum=0,
        ),
        Setting("HUNTER_PAGE_SIZE", "Addresses per Hunter page (`limit`).", "int", 10, minimum=1),
        Setting("HUNTER_MAX_PAGES", "Hunter pages read per domain at most.", "int", 3, minimum=1),
        Setting(
            "HUNTER_RATE_LIMIT_RETRIES",
            "Re-sends of a request Hunter answered 403 (rate limit) or 202 (not ready), after a back-off.",
            "int",
            3,
            minimum=0,
        ),
        Setting(
            "CLEARBIT_API_KEY",
            "Clearbit API key (a Bearer token); unset: no Clearbit look-ups (its free APIs were retired in 2025).",
            secret=True,
        ),
        Setting("CLEARBIT_COMPANY_URL", "Clearbit's company lookup URL (takes `?domain=`).", type="url"),
        Setting("CLEARBIT_PERSON_URL", "Clearbit's person lookup URL (takes `?email=`).", type="url"),
        Setting(
            "CLEARBIT_MAX_PEOPLE",
            "Clearbit person look-ups per domain, for addresses published without a name.",
            "int",
            3,
            minimum=0,
        ),
        Setting(
            "EMAILS_CONFIDENCE_THRESHOLD",
            "A pattern is stated only at this confidence (0-1) or more; below it the record abstains.",
            "float",
            0.6,
            minimum=0,
        ),
        Setting(
            "EMAILS_MIN_ADDRESSES",
            "Distinct named addresses needed before a pattern is stated (and for a `from=` domain to be looked up).",
            "int",
            2,
            minimum=1,
        ),
        Setting("EMAILS_SAMPLE_LIMIT", "Sample addresses kept per record.", "int", 5, minimum=0),
    ),
    downloader_middlewares={"crawler.spiders.emails.middleware.EmailsApiMiddleware": 590},
)
