"""The GitHub source's declaration: what the core, the docs and the deploy files know of it."""

from crawler.policy import SourcePolicy
from crawler.sources import Argument, Setting, Source
from crawler.spiders.github.records import GithubCommit, GithubProfile, GithubRepo

SOURCE = Source(
    name="github",
    title="GitHub profiles, repositories and commits (incremental), and commit search by email domain",
    records=(GithubProfile, GithubRepo, GithubCommit),
    policy=SourcePolicy(
        concurrency=8,  # far under GitHub's 100 concurrent requests: the secondary limits stay quiet
        retries=3,
        retry_http_codes=(429, 500, 502, 503, 504),
        proxies_setting="GITHUB_PROXIES",
        max_response_bytes=50 * 1024 * 1024,
    ),
    arguments=(
        Argument("users", "Logins (users or organizations) whose profile, repositories and commits to fetch.", "list"),
        Argument("repos", "Repositories (`owner/name`, comma-separated) to fetch with their commits.", "list"),
        Argument("domains", "Email domains: commits whose author address is at one of them (commit search).", "list"),
        Argument(
            "from_packages",
            "A source or namespace whose stored records name repositories: fetch those repositories.",
        ),
    ),
    settings=(
        Setting(
            "GITHUB_API_URL",
            "The API base (GitHub Enterprise: `https://<host>/api/v3/`).",
            type="url",
            default="https://api.github.com/",
        ),
        Setting("GITHUB_TOKENS", "API tokens, comma-separated; rotated by remaining budget.", "list", "", secret=True),
        Setting("GITHUB_TOKEN", "One API token (added to GITHUB_TOKENS).", secret=True),
        Setting(
            "GITHUB_COMMIT_STATS",
            "Fetch each commit's detail (files changed, additions, deletions): one request per commit.",
            "bool",
            False,
        ),
        Setting(
            "GITHUB_MAX_WAIT",
            "Longest wait, in seconds, for a token's budget to reset before a request is given up.",
            "float",
            3700.0,
            minimum=0,
        ),
        Setting("GITHUB_RATE_LIMIT_RETRIES", "Retries of a rate-limited (403/429) answer.", "int", 6, minimum=0),
        Setting("GITHUB_PROXIES", "Proxies for this source (comma-separated); empty: none.", "list", ""),
    ),
    downloader_middlewares={"crawler.spiders.github.middleware.GithubRateLimitMiddleware": 560},
)
