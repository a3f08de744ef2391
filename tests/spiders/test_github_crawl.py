"""End-to-end crawls of the github spider against the loopback fake GitHub API."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.fakes.github import BLOCKED_REPO, EMPTY_REPO, MISSING_USER, FakeGitHub
from tests.fakes.npm import FakeNpmRegistry

pytestmark = pytest.mark.slow
SECRET = "ghp_secret-token-never-to-be-seen"


def github_env(fake: FakeGitHub, tokens: str = "t1") -> dict[str, str]:
    return {"GITHUB_API_URL": fake.url, "GITHUB_TOKENS": tokens}


def count(workspace, sql: str) -> int:
    return workspace.query(sql)[0]["n"]


def healthy_repos(fake: FakeGitHub, login: str) -> list[str]:
    return [r for r in fake.repo_names(login) if r not in fake.empty_repos]


def test_users_and_repos_then_incremental_commits_and_etags(workspace):
    with FakeGitHub(users=4, repos_per_user=2, commits_per_repo=12, seed=3).serve() as fake:
        env = github_env(fake)
        repo = healthy_repos(fake, "user-0002")[0]
        workspace.crawl("github", "users=user-0000", f"repos={repo}", **env)
        profiles = {r["login"] for r in workspace.query("SELECT login FROM github_profile")}
        assert profiles == {"user-0000", "user-0002"}  # the user, and the repo's owner
        repos = {r["full_name"] for r in workspace.query("SELECT full_name FROM github_repo")}
        assert repos == set(fake.repo_names("user-0000")) | {repo}
        assert count(workspace, f"SELECT count(*) AS n FROM github_commit WHERE repo = '{repo}'") == 12
        cursor = workspace.meta().get_cursor("github", f"commits:{repo}")
        newest = max(c["commit"]["committer"]["date"] for c in fake.commits(repo))
        assert cursor.startswith(newest.removesuffix("Z"))

        # second run: everything unchanged answers 304, costs nothing and stores nothing new
        fake.reset_counters()
        history_before = count(workspace, "SELECT count(*) AS n FROM github_repo_history")
        workspace.crawl("github", f"repos={repo}", **env)
        assert fake.not_modified >= 2  # the repo and its owner
        assert count(workspace, "SELECT count(*) AS n FROM github_repo_history") == history_before
        spent = sum(fake.spent.values())
        assert spent <= fake.total_requests - fake.not_modified

        # new commits: only they are fetched, plus the newest known one again (`since` is inclusive), once per run
        added = fake.add_commits(repo, 3)
        workspace.crawl("github", f"repos={repo}", **env)
        rows = workspace.query(
            f"SELECT sha, count(*) AS n FROM github_commit_history WHERE repo = '{repo}' GROUP BY sha"
        )
        assert {r["sha"] for r in rows} >= set(added)
        assert sum(r["n"] for r in rows) == 12 + 3 + 2


def test_exhausted_token_is_never_used_before_its_reset_and_tokens_rotate(workspace):
    # 6 profiles + 6 repository lists = 12 requests: more than either token can pay for alone
    tokens = {"t1": 5, "t2": 8}
    with FakeGitHub(users=6, repos_per_user=2, commits_per_repo=3, seed=4, tokens=tokens).serve() as fake:
        workspace.crawl("github", "users=" + ",".join(fake.logins()[:6]), **github_env(fake, "t1,t2"))
        assert fake.requests_after_exhaustion("t1") == 0 and fake.requests_after_exhaustion("t2") == 0
        assert 0 < fake.spent["t1"] <= 5 and 0 < fake.spent["t2"] <= 8
        assert fake.spent["t1"] + fake.spent["t2"] == 12
    assert count(workspace, "SELECT count(*) AS n FROM github_profile") == 6


def test_waits_for_the_reset_when_every_token_is_spent(workspace):
    with FakeGitHub(users=3, repos_per_user=1, commits_per_repo=2, seed=5, tokens={"t1": 3}, window=2).serve() as fake:
        started = time.monotonic()
        workspace.crawl("github", "users=" + ",".join(fake.logins()[:3]), **github_env(fake))
        assert fake.requests_after_exhaustion("t1") == 0
        assert time.monotonic() - started >= 2  # it had to wait for a new window
    assert count(workspace, "SELECT count(*) AS n FROM github_profile") == 3


def test_secondary_limits_obey_retry_after(workspace):
    with FakeGitHub(users=3, repos_per_user=2, commits_per_repo=4, seed=6, secondary_every=4).serve() as fake:
        repos = [r for login in fake.logins()[:3] for r in healthy_repos(fake, login)]
        # one request at a time, so that none is already on its way when the limit answers
        serial = {"CONCURRENT_REQUESTS": 1, "CONCURRENT_REQUESTS_PER_DOMAIN": 1}
        workspace.crawl("github", "repos=" + ",".join(repos), settings=serial, **github_env(fake))
        assert fake.requests_before_retry_after("t1") == 0
    assert count(workspace, "SELECT count(*) AS n FROM github_repo") == len(repos)


def test_empty_blocked_and_missing(workspace):
    with FakeGitHub(users=2, repos_per_user=1, seed=7).serve() as fake:
        workspace.crawl(
            "github", f"repos={EMPTY_REPO},{BLOCKED_REPO}", f"users={MISSING_USER}", exit_status=4, **github_env(fake)
        )
    reasons = sorted(row["reason"] for row in workspace.meta().failed("github"))
    assert reasons == ["http_404", "http_451"]
    assert count(workspace, f"SELECT count(*) AS n FROM github_repo WHERE full_name = '{EMPTY_REPO}'") == 1
    assert count(workspace, "SELECT count(*) AS n FROM github_commit") == 0


def test_commit_search_by_domain(workspace):
    with FakeGitHub(users=5, repos_per_user=2, commits_per_repo=10, seed=8).serve() as fake:
        expected = {
            c["sha"]
            for c in fake.search("corp.example")
            if c["commit"]["author"]["email"].endswith("@corp.example")
            or c["commit"]["committer"]["email"].endswith("@corp.example")
        }
        workspace.crawl("github", "domains=corp.example", **github_env(fake))
    rows = workspace.query("SELECT sha, author_email, committer_email FROM github_commit")
    assert {r["sha"] for r in rows} == expected and expected
    assert all("@corp.example" in (r["author_email"] + r["committer_email"]) for r in rows)


def test_from_packages_reads_repository_urls_written_by_the_npm_spider(workspace):
    with FakeGitHub(users=3, repos_per_user=2, commits_per_repo=2, seed=9).serve() as github:
        repos = [r for r in github.repo_names() if r not in github.empty_repos][:2]
        packuments = {
            f"pkg-from-{i}": {
                "name": f"pkg-from-{i}",
                "dist-tags": {"latest": "1.0.0"},
                "versions": {
                    "1.0.0": {
                        "name": f"pkg-from-{i}",
                        "version": "1.0.0",
                        "repository": {"type": "git", "url": f"git+https://github.com/{repo}.git"},
                    }
                },
            }
            for i, repo in enumerate(repos)
        }
        with FakeNpmRegistry(packages=2, seed=1, extra=packuments).serve() as npm:
            workspace.crawl("npm", "packages=" + ",".join(packuments), NPM_REGISTRY_URL=npm.registry_url)
        workspace.crawl("github", "from_packages=npm", **github_env(github))
    stored = {r["full_name"] for r in workspace.query("SELECT full_name FROM github_repo")}
    assert stored == set(repos)


def test_tokens_never_leave_the_process(workspace):
    with FakeGitHub(users=2, repos_per_user=1, commits_per_repo=2, seed=10).serve() as fake:
        result = workspace.crawl(
            "github",
            f"users={fake.logins()[0]},{MISSING_USER}",
            settings={"LOG_LEVEL": "DEBUG"},
            exit_status=4,  # the missing user's dead letter fails the monitors
            **github_env(fake, SECRET),
        )
        assert fake.spent[SECRET] > 0  # the token was used
    assert SECRET not in result.stdout + result.stderr
    for path in workspace.data.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    with sqlite3.connect(workspace.data / "_meta" / "meta.db") as db:
        dump = "\n".join(db.iterdump())
    assert SECRET not in dump


def test_commit_cursor_covers_every_commit_detail_and_holds_when_one_fails(workspace):
    """With GITHUB_COMMIT_STATS the records come from per-commit requests: the `commits:` cursor must wait
    for all of them (and the later list pages), and must not move when one of them ended as a dead letter."""
    from tests.fakes.github import _Result

    with FakeGitHub(users=1, repos_per_user=1, commits_per_repo=130, seed=4).serve() as fake:
        repo = next(r for r in fake.repo_names() if r not in fake.empty_repos and r not in fake.blocked_repos)
        commits = fake.commits(repo)
        broken = commits[-1]["sha"]  # the oldest: on the second list page
        route = fake._route

        def failing_route(path: str):
            if path.endswith(f"/commits/{broken}"):
                return "other", lambda request, *args: _Result(500, {"message": "Server Error"}), ()
            return route(path)

        fake._route = failing_route
        env = github_env(fake)
        workspace.crawl("github", f"repos={repo}", settings={"GITHUB_COMMIT_STATS": "true"}, **env)
        stored = count(workspace, f"SELECT count(*) AS n FROM github_commit WHERE repo = '{repo}'")
        assert stored == len(commits) - 1
        assert [row["reason"] for row in workspace.meta().failed("github")] == ["http_500"]
        assert workspace.meta().get_cursor("github", f"commits:{repo}") is None  # held: the next run lists again

        fake._route = route
        workspace.crawl("github", f"repos={repo}", settings={"GITHUB_COMMIT_STATS": "true"}, **env)
        assert count(workspace, f"SELECT count(*) AS n FROM github_commit WHERE repo = '{repo}'") == len(commits)
        newest = max(c["commit"]["committer"]["date"] for c in commits)
        assert workspace.meta().get_cursor("github", f"commits:{repo}").startswith(newest.removesuffix("Z"))
