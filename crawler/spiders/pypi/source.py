"""The PyPI source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Schedule, Setting, Source
from crawler.spiders.pypi.records import PypiPackage

SOURCE = Source(
    name="pypi",
    title="PyPI projects, by name, from the whole simple index, or those whose serial changed",
    records=(PypiPackage,),
    modes=("named", "full", "incremental"),
    arguments=(
        Argument("packages", "Project names to fetch (comma-separated): a named crawl.", "list"),
        Argument("packages_file", "A file of project names, one per line: a named crawl.", "file"),
    ),
    policy=SourcePolicy(
        concurrency=16,
        retries=4,
        proxies_setting="PYPI_PROXIES",
        max_response_bytes=200 * 1024 * 1024,  # projects with thousands of releases are MBs of JSON
    ),
    settings=(
        Setting(
            "PYPI_URL",
            "The index base URL that serves `simple/` and `pypi/`. Default: the pip configuration of the "
            "crawl's user (PIP_INDEX_URL, `pip config`), else the pypi-simple library's published endpoint.",
            type="url",
        ),
        Setting(
            "PYPI_JSON_API",
            "`auto`: the JSON API, falling back to the simple API per project; `true`; `false` (a mirror "
            "that serves only the simple API).",
            default="auto",
            choices=("auto", "true", "false"),
        ),
        Setting("PYPI_PAGE_SIZE", "Projects queued at a time from the index.", "int", 1000, minimum=1),
        Setting(
            "PYPI_MIN_INDEX_RATIO",
            "An incremental run refuses to tombstone anything when the index lists fewer projects than "
            "this share of the live projects stored (a truncated index answer).",
            "float",
            0.9,
            minimum=0,
        ),
        Setting("PYPI_PROXIES", "Proxies for this source (comma-separated); empty: none.", "list", ""),
    ),
    schedule=Schedule("0 3 * * *", {"mode": "incremental"}, "Daily incremental PyPI sync"),
)
