"""The WHOIS source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Setting, Source
from crawler.spiders.whois.records import WhoisDomain

WEEK = 7 * 24 * 3600.0

SOURCE = Source(
    name="whois",
    title="Domain registrations: RDAP by IANA bootstrap with the registrar's answer merged, else port-43 WHOIS",
    records=(WhoisDomain,),
    modes=("named",),
    arguments=(
        Argument("domains", "Domains to look up (comma-separated; URLs and e-mail addresses give theirs).", "list"),
        Argument("domains_file", "A file of domains, one per line.", "file"),
        Argument(
            "from",
            "A source or namespace whose stored records name domains (their declared domain columns), "
            "e.g. a zone-file source's new registrations or the packages' homepages.",
        ),
        Argument("force", "`true`: also fetch the domains stored within WHOIS_TTL.", choices=("true", "false")),
    ),
    policy=SourcePolicy(
        # per server (each RDAP host and WHOIS server is its own download slot); the rate is the token
        # bucket's (WHOIS_RATE), this only bounds the connections open to one server
        concurrency=2,
        retries=3,
        backoff_base=2.0,
        backoff_max=300.0,
        max_response_bytes=2 * 1024 * 1024,
        download_timeout=30.0,
        freshness_ttl=WEEK,
    ),
    extra_setting_prefixes=("RDAP_",),
    settings=(
        Setting(
            "RDAP_BOOTSTRAP_URL",
            "IANA's RDAP bootstrap registry for domains (RFC 9224); cached in the store, refreshed at most "
            "every WHOIS_BOOTSTRAP_MAX_AGE seconds with a conditional GET.",
            type="url",
            default="https://data.iana.org/rdap/dns.json",
        ),
        Setting(
            "WHOIS_BOOTSTRAP_MAX_AGE",
            "Seconds a cached bootstrap file is used before it is asked for again.",
            "float",
            86400.0,
            minimum=0,
        ),
        Setting(
            "RDAP_URL_MAP",
            "JSON object: URL prefix -> replacement, applied to every RDAP URL (bootstrap, registry, registrar), "
            'e.g. {"https://rdap.example.com/": "http://127.0.0.1:8080/"} (a relay, a loopback fake).',
            default="",
        ),
        Setting(
            "WHOIS_IANA_SERVER",
            "The first port-43 server of a referral chain: it answers a TLD with `refer:` its WHOIS server.",
            default="whois.iana.org",
        ),
        Setting(
            "WHOIS_SERVER_MAP",
            'JSON object: WHOIS server host name -> "host:port" to connect to instead (a relay, a loopback '
            "fake); records and politeness still name the original server.",
            default="",
        ),
        Setting(
            "WHOIS_TTL",
            "Seconds: a domain stored within this time is not fetched again (`-a force=true` fetches it).",
            "float",
            WEEK,
            minimum=0,
        ),
        Setting(
            "WHOIS_RATE",
            "Requests per second to any one server (its token bucket's refill).",
            "float",
            1.0,
            minimum=0.001,
        ),
        Setting("WHOIS_BURST", "Requests a server's bucket lets through at once after a pause.", "int", 2, minimum=1),
        Setting(
            "WHOIS_SERVER_RATES",
            "JSON object: server host name -> requests per second, for servers that allow more or less "
            'than WHOIS_RATE, e.g. {"whois.denic.de": 0.2}.',
            default="",
        ),
        Setting(
            "WHOIS_THROTTLE_BACKOFF",
            "Seconds a server rests after its first throttle answer (no Retry-After / 'try again after'); "
            "doubles with each further one in a row.",
            "float",
            60.0,
            minimum=0,
        ),
        Setting(
            "WHOIS_THROTTLE_MAX_WAIT",
            "A throttle answer asking for a longer rest than this (seconds) is not retried: its domain becomes "
            "a dead letter (`scrapy replay-failed` fetches it later); the server still rests as asked.",
            "float",
            3600.0,
            minimum=0,
        ),
        Setting(
            "WHOIS_FOLLOW_REGISTRAR",
            "Follow the registry's answer to the registrar's (RDAP link, `Registrar WHOIS Server:`) and merge.",
            "bool",
            True,
        ),
        Setting("WHOIS_RAW_BYTES", "Bytes of the raw answers kept in each record (0: none).", "int", 65536, minimum=0),
    ),
    download_handlers={
        "whois": "crawler.spiders.whois.transport.WhoisDownloadHandler",
        # the project's HTTP handler, behind the per-server token buckets
        "http": "crawler.spiders.whois.transport.PoliteHttpDownloadHandler",
        "https": "crawler.spiders.whois.transport.PoliteHttpDownloadHandler",
    },
    # before the retry middleware (550) sees the response: a throttle answer rests its server first
    downloader_middlewares={"crawler.spiders.whois.politeness.ThrottleAnswers": 560},
)
