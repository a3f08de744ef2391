"""The CZDS source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Schedule, Setting, Source
from crawler.spiders.czds.records import ZoneChange, ZoneDomain, ZoneFile

FILE_HANDLER = "crawler.downloaders.files.FileDownloadHandler"

SOURCE = Source(
    name="czds",
    title="ICANN CZDS zone files: delegations per zone date, kept raw, and the day-over-day changes",
    records=(ZoneDomain, ZoneChange, ZoneFile),
    arguments=(
        Argument("tlds", "Zones to fetch (comma-separated, e.g. com,net); default: every approved zone.", "list"),
    ),
    policy=SourcePolicy(
        concurrency=2,  # two zone files at a time: the disk and one core, not the service, are the limit
        retries=3,
        backoff_base=5.0,
        backoff_max=300.0,  # a 429 on login lasts the rest of a 5-minute window
        download_timeout=300.0,
    ),
    settings=(
        Setting(
            "CZDS_AUTH_URL",
            "The base URL that serves `/api/authenticate` (ICANN's account API); required.",
            type="url",
        ),
        Setting(
            "CZDS_API_URL",
            "The base URL that serves `/czds/downloads/links` (the CZDS API); required. Zone files are "
            "downloaded from the URLs it lists.",
            type="url",
        ),
        Setting("CZDS_USERNAME", "The CZDS portal user name (an e-mail address).", secret=True),
        Setting("CZDS_PASSWORD", "The CZDS portal password.", secret=True),
        Setting(
            "CZDS_TOKEN_RENEW_SECONDS",
            "Log in again this many seconds before the access token's `exp` (tokens last 24 h; the service "
            "allows 8 logins per 5 minutes per IP).",
            "float",
            600.0,
            minimum=0,
        ),
        Setting(
            "CZDS_DOWNLOAD_DIR",
            "The local directory zone files stream to while they are checked and parsed (one file per "
            "zone being read; `.com` takes about 5 GB). Empty: a `czds` folder in the system's temporary "
            "directory.",
            default="",
        ),
        Setting(
            "CZDS_READ_TIMEOUT",
            "Seconds a zone download may go without receiving data before it fails.",
            "float",
            300.0,
            minimum=1,
        ),
    ),
    schedule=Schedule("30 6 * * *", {}, "Daily CZDS zone files (zones change once a day)"),
    downloader_middlewares={"crawler.spiders.czds.auth.TokenMiddleware": 600},
    download_handlers={"http": FILE_HANDLER, "https": FILE_HANDLER},
)
