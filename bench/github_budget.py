"""GitHub budget benchmark: requests spent, requests saved by ETags, records/s — platform vs a naive spider.

``python -m bench.github_budget [--users 150] [--repos 300] [--passes 5] [--window 60]``

One run serves the loopback fake GitHub (``tests.fakes.github``) in this process with two tokens of 5,000
requests per token per simulated hour (``--window`` real seconds stand for the hour). The same workload — the
profiles and repository lists of ``--users`` users and ``--repos`` repositories with their owners and commits —
is crawled ``--passes`` times by each contender, as a scheduled job would: between passes 10 % of the
repositories get new commits. Contenders run as subprocesses, one after the other, each against fresh budgets:

* ``platform``: ``scrapy crawl github`` with both tokens (budget-aware rotation, ETags, incremental commits);
* ``naive``: ``bench/baselines/naive_github.py`` with stock Scrapy settings and the first token only.

Printed per contender: requests sent, requests that cost budget, 304s (saved by ETags), requests sent to an
exhausted token before its reset, rate-limit errors received, records stored/yielded, records/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.meta import MetaDB
from tests.fakes.github import FakeGitHub

ROOT = Path(__file__).resolve().parent.parent
TOKENS = {"bench-token-1": 5000, "bench-token-2": 5000}


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> float:
    started = time.perf_counter()
    subprocess.run(
        args, cwd=cwd, env=env, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def workload(fake: FakeGitHub, users: int, repos: int) -> tuple[list[str], list[str]]:
    logins = fake.logins()
    repo_names = [r for r in fake.repo_names() if r not in fake.empty_repos and r not in fake.blocked_repos]
    return logins[:users], repo_names[:repos]


def platform_pass(fake: FakeGitHub, users: list[str], repos: list[str], work: Path) -> tuple[float, int]:
    env = {
        **os.environ,
        "SCRAPY_SETTINGS_MODULE": "crawler.settings",
        "PYTHONPATH": str(ROOT),
        "STORAGE_URI": str(work / "data"),
        "GITHUB_API_URL": fake.url,
        "GITHUB_TOKENS": ",".join(TOKENS),
        "LOG_LEVEL": "WARNING",
        "BATCH_IDLE_SECONDS": "1",
    }
    seconds = run(
        [
            sys.executable,
            "-m",
            "scrapy",
            "crawl",
            "github",
            "-a",
            "users=" + ",".join(users),
            "-a",
            "repos=" + ",".join(repos),
        ],
        env,
        work,
    )
    meta = MetaDB.connect(f"sqlite:///{work / 'data' / '_meta' / 'meta.db'}")
    items = meta.last_runs("github", limit=1)[0]["items"]
    meta.close()
    return seconds, int(items)


def naive_pass(fake: FakeGitHub, users: list[str], repos: list[str], work: Path, n: int) -> tuple[float, int]:
    out = work / f"naive-{n}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPY_")}
    seconds = run(
        [
            sys.executable,
            "-m",
            "scrapy",
            "runspider",
            str(ROOT / "bench" / "baselines" / "naive_github.py"),
            "-a",
            f"api={fake.url}",
            "-a",
            f"token={next(iter(TOKENS))}",
            "-a",
            "users=" + ",".join(users),
            "-a",
            "repos=" + ",".join(repos),
            "-o",
            f"{out}:jsonlines",
            "-s",
            "LOG_LEVEL=WARNING",
        ],
        env,
        work,
    )
    return seconds, sum(1 for _ in out.open()) if out.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--repos", type=int, default=300)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--window", type=float, default=60.0, help="real seconds that stand for GitHub's hour")
    args = parser.parse_args()
    results = {}
    for contender in ("platform", "naive"):
        with (
            tempfile.TemporaryDirectory(prefix=f"bench-github-{contender}-") as tmp,
            FakeGitHub(
                users=max(args.users, args.repos // 3 + 1),
                repos_per_user=3,
                commits_per_repo=30,
                seed=1,
                tokens=TOKENS,
                window=args.window,
            ).serve() as fake,
        ):
            users, repos = workload(fake, args.users, args.repos)
            seconds = records = 0.0
            for n in range(args.passes):
                if n:
                    for repo in repos[::10]:
                        fake.add_commits(repo, 2)
                if contender == "platform":
                    s, r = platform_pass(fake, users, repos, Path(tmp))
                else:
                    s, r = naive_pass(fake, users, repos, Path(tmp), n)
                seconds += s
                records += r
            spent = sum(fake.spent.values())
            results[contender] = {
                "requests": fake.total_requests,
                "spent": spent,
                "not_modified": fake.not_modified,
                "after_exhaustion": sum(fake.requests_after_exhaustion(t) for t in TOKENS),
                "records": int(records),
                "seconds": seconds,
            }
    print(
        f"\nworkload: {args.users} users + {args.repos} repositories (owners, commits), {args.passes} passes, "
        f"2 tokens x 5,000 requests per simulated hour ({args.window:.0f} s)"
    )
    print(
        f"{'contender':<10}{'requests':>10}{'spent':>8}{'304 saved':>11}{'to exhausted':>14}{'records':>9}"
        f"{'records/s':>11}"
    )
    for name, r in results.items():
        print(
            f"{name:<10}{r['requests']:>10}{r['spent']:>8}{r['not_modified']:>11}{r['after_exhaustion']:>14}"
            f"{r['records']:>9}{r['records'] / r['seconds']:>11.1f}"
        )
    p, n = results["platform"], results["naive"]
    print(
        f"\nplatform spends {p['spent'] / max(n['spent'], 1):.2f}x the naive spider's budget; ETags saved "
        f"{p['not_modified']} requests; requests to an exhausted token: platform {p['after_exhaustion']}, "
        f"naive {n['after_exhaustion']}"
    )


if __name__ == "__main__":
    main()
