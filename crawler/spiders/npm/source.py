"""The npm source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Schedule, Setting, Source
from crawler.spiders.npm.records import NpmPackage

SOURCE = Source(
    name="npm",
    title="npm packuments, by name or from the replication changes feed",
    records=(NpmPackage,),
    modes=("named", "incremental", "full"),
    arguments=(
        Argument("packages", "Package names to fetch (comma-separated): a named crawl.", "list"),
        Argument("packages_file", "A file of package names, one per line: a named crawl.", "file"),
        Argument("since", "`mode=incremental`: the feed sequence to start after, instead of the saved cursor."),
    ),
    policy=SourcePolicy(
        concurrency=32,
        retries=4,
        backoff_base=1.0,
        proxies_setting="NPM_PROXIES",
        max_response_bytes=100 * 1024 * 1024,  # packuments can be tens of MB
    ),
    settings=(
        Setting(
            "NPM_REGISTRY_URL",
            "The registry base URL. Default: the npm configuration of the user the crawl runs as "
            "(npm_config_registry, .npmrc, `npm config get registry`).",
            type="url",
        ),
        Setting(
            "NPM_CHANGES_URL",
            "The replication feed's `_changes` URL; required by `mode=incremental` and `mode=full`.",
            type="url",
        ),
        Setting("NPM_CHANGES_PAGE_SIZE", "Changes per feed page (the feed caps it at 10000).", "int", 1000, minimum=1),
        Setting(
            "NPM_STALE_RETRIES",
            "Re-fetches of a packument older than the change just seen (a lagging CDN).",
            "int",
            3,
            minimum=0,
        ),
        Setting("NPM_STALE_RETRY_DELAY", "Seconds before such a re-fetch.", "float", 2.0, minimum=0),
        Setting(
            "NPM_SEQ_RESET",
            "When the feed's sequence goes backwards: `rewind` (replay the new sequence from 0) or `fail`.",
            default="rewind",
            choices=("rewind", "fail"),
        ),
        Setting("NPM_PROXIES", "Proxies for this source (comma-separated); empty: none.", "list", ""),
    ),
    schedule=Schedule("0 2 * * *", {"mode": "incremental"}, "Daily incremental npm sync"),
)
