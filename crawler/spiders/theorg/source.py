"""The TheOrg source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Setting, Source
from crawler.spiders.theorg.records import OrgCompany

PLAYWRIGHT_HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
DAY = 24 * 3600.0

SOURCE = Source(
    name="theorg",
    title="TheOrg company org charts (company, positions as a graph, teams) from its Next.js pages",
    records=(OrgCompany,),
    modes=("named",),
    arguments=(
        Argument("orgs", "Company slugs (`<THEORG_URL>org/<slug>`, comma-separated) to fetch.", "list"),
        Argument("orgs_file", "A file of company slugs, one per line.", "file"),
        Argument("domains", "Company domains (comma-separated): each found through the site's search page.", "list"),
        Argument("from", "A source or namespace whose stored domains to look up (the companies behind them)."),
    ),
    policy=SourcePolicy(
        concurrency=4,
        delay=1.0,  # a web site, not an API: a polite pace by default
        autothrottle=True,
        retries=3,
        backoff_base=2.0,
        proxies_setting="THEORG_PROXIES",
        max_response_bytes=20 * 1024 * 1024,
        download_timeout=60.0,
        freshness_ttl=30 * DAY,
        robots_txt=True,
    ),
    settings=(
        Setting("THEORG_URL", "The site's base URL (its pages are `<base>org/<slug>`); required.", type="url"),
        Setting(
            "THEORG_BROWSER",
            "Render a page in Chromium when its HTML names a company but holds no chart (the chart is "
            "filled in by scripts). Off: such pages become dead letters (`needs_browser`).",
            "bool",
            True,
        ),
        Setting(
            "THEORG_CHROMIUM_PATH",
            "The Chromium executable. Default: `chromium` (or `chromium-browser`) on the PATH "
            "(Debian: `apt-get install chromium`).",
        ),
        Setting("THEORG_BROWSER_CONTEXTS", "Browser contexts in use at once.", "int", 2, minimum=1),
        Setting(
            "THEORG_PAGES_PER_CONTEXT",
            "Pages a browser context renders before it is closed and replaced (bounds its memory).",
            "int",
            50,
            minimum=1,
        ),
        Setting(
            "THEORG_BROWSER_TIMEOUT",
            "Seconds a rendered page may take to load and show its chart.",
            "float",
            30.0,
            minimum=1,
        ),
        Setting(
            "THEORG_MEMORY_LIMIT_MB",
            "Memory (proportional set size) of the crawl process and its browser processes together above "
            "which the crawl stops (Scrapy's MEMUSAGE_LIMIT_MB over the process tree); 0: no limit.",
            "int",
            2048,
            minimum=0,
        ),
        Setting(
            "THEORG_PROXIES",
            "Proxies for this source (comma-separated): per request over HTTP, per browser context in "
            "the browser; a failing one is benched. Empty: none.",
            "list",
            "",
        ),
    ),
    downloader_middlewares={
        # pages of a web site: robots.txt is obeyed (the project disables the middleware for APIs)
        "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": 100,
        # before the proxy rotation (740): a browser request's proxy is its context's
        "crawler.spiders.theorg.browser.BrowserContextMiddleware": 730,
    },
    download_handlers={"http": PLAYWRIGHT_HANDLER, "https": PLAYWRIGHT_HANDLER},
)
