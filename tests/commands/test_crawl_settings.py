import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("how", "name", "value", "expected"),
    [
        ("cmdline", "BATCH_MAX_RECORDS", "abc", "a positive integer"),
        ("environment", "BATCH_IDLE_SECONDS", "soon", "a number >= 0"),
    ],
)
def test_a_bad_setting_stops_the_crawl_before_it_starts(workspace, fake_npm, npm_env, how, name, value, expected):
    healthy = sorted(fake_npm.package_names())[0]
    env = {**npm_env, name: value} if how == "environment" else npm_env
    settings = {name: value} if how == "cmdline" else {}
    result = workspace.crawl("npm", f"packages={healthy}", settings=settings, check=False, **env)
    assert result.returncode != 0
    assert f"{name}: expected {expected}, got '{value}'" in result.stderr
    for symptom in ("AttributeError", "NotConfigured", "Traceback"):
        assert symptom not in result.stderr
    assert fake_npm.total_requests == 0
    assert not (workspace.data / "npm").exists()  # no records
    meta_db = workspace.data / "_meta" / "meta.db"
    assert not meta_db.exists() or workspace.meta().last_runs() == []  # no run rows


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("pakages=left-pad", "npm: unknown argument -a pakages (did you mean packages?); arguments: packages"),
        ("mode=fulll", "npm: -a mode: expected one of named, incremental, full, worker, got 'fulll'"),
        ("mode=", "npm: -a mode: expected one of named, incremental, full, worker, got ''"),
        ("packages_file=missing.txt", "npm: -a packages_file: expected the path of a readable file"),
    ],
)
def test_a_bad_argument_is_a_usage_error_and_fetches_nothing(workspace, fake_npm, npm_env, argument, message):
    result = workspace.crawl("npm", argument, check=False, **npm_env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert fake_npm.total_requests == 0
    assert not (workspace.data / "npm").exists()


def test_deployment_arguments_stay_accepted(workspace, fake_npm, npm_env):
    healthy = sorted(fake_npm.package_names())[0]
    workspace.crawl("npm", f"packages={healthy}", "_job=job-42", "_version=r1", **npm_env)
    assert [run["run_id"] for run in workspace.meta().last_runs()] == ["job-42"]


def test_describe_lists_a_sources_arguments_settings_and_namespaces(workspace):
    out = workspace.scrapy("describe", "npm").stdout
    for expected in ("packages_file", "mode", "named|incremental|full|worker", "NPM_CHANGES_URL", "view npm_package"):
        assert expected in out
    result = workspace.scrapy("describe", "nope", check=False)
    assert result.returncode == 2 and "give one source:" in result.stderr


def test_a_crawl_whose_monitors_fail_exits_4_unless_relaxed(workspace, fake_npm, npm_env):
    # every name unknown to the registry: no records, so the minimum-items monitor fails
    failed = workspace.crawl("npm", "packages=no-such-package-x", check=False, **npm_env)
    assert failed.returncode == 4, failed.stderr[-2000:]
    assert "exit status 4: the monitors failed" in failed.stderr
    relaxed = workspace.crawl(
        "npm", "packages=no-such-package-y", settings={"EXIT_ON_MONITOR_FAILURE": "false"}, check=False, **npm_env
    )
    assert relaxed.returncode == 0, relaxed.stderr[-2000:]


@pytest.mark.parametrize(
    ("arguments", "settings", "message"),
    [
        (
            ("packages=a",),
            {"STORAGE_URI": "{tmp}/a-file"},
            "STORAGE_URI: cannot use '{tmp}/a-file' ([Errno 17] File exists",
        ),
        (
            ("packages=a",),
            {"META_DB_URL": "postgresql://nobody:hunter2@127.0.0.1:1/none"},
            "META_DB_URL: cannot open 'postgresql://nobody:***@127.0.0.1:1/none' (connection failed",
        ),
        (
            ("mode=incremental",),
            {"NPM_CHANGES_URL": ""},
            "scrapy crawl: error: npm: mode=incremental follows the replication feed: set NPM_CHANGES_URL",
        ),
    ],
    ids=["storage-is-a-file", "meta-db-unreachable", "endpoint-missing"],
)
def test_an_unusable_setting_is_one_line_naming_it(workspace, fake_npm, npm_env, arguments, settings, message):
    (workspace.path / "a-file").write_text("not a folder")
    settings = {name: value.format(tmp=workspace.path) for name, value in settings.items()}
    env = {k: v for k, v in npm_env.items() if k not in settings}
    result = workspace.crawl("npm", *arguments, settings=settings, check=False, **env)
    assert result.returncode == 2
    assert message.format(tmp=workspace.path) in result.stderr
    assert result.stderr.count("error:") == 1
    for noise in ("Traceback", "ERROR", "hunter2", "Task exception"):
        assert noise not in result.stderr
    assert fake_npm.total_requests == 0


def test_a_clean_crawl_logs_no_warnings_and_counts_no_dropped_items(workspace, fake_npm, npm_env):
    names = sorted(fake_npm.package_names())[:3]
    result = workspace.crawl("npm", "packages=" + ",".join(names), **npm_env)
    log = result.stderr
    assert " WARNING: " not in log and " ERROR: " not in log, log[-3000:]
    (run,) = workspace.meta().last_runs("npm")
    assert run["stats"]["item_scraped_count"] == 3
    assert "item_dropped_count" not in run["stats"]  # the control items are not dropped items


def test_a_batch_the_store_refuses_stops_the_crawl_with_store_failed_and_exit_3(workspace, fake_npm, npm_env):
    blocked = workspace.path / "blocked"
    blocked.mkdir()
    (blocked / "npm").write_text("not a folder: no batch can be written")
    names = sorted(fake_npm.package_names())[:30]
    result = workspace.crawl(
        "npm",
        "packages=" + ",".join(names),
        settings={"BATCH_MAX_RECORDS": 5, "STORE_RETRY_SECONDS": 0, "CONCURRENT_REQUESTS": 2},
        check=False,
        STORAGE_URI=str(blocked),
        META_DB_URL=f"sqlite:///{workspace.path / 'meta.db'}",
        **npm_env,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "exit status 3: records were scraped but not stored" in result.stderr
    assert "'finish_reason': 'store_failed'" in result.stderr
    assert fake_npm.total_requests < len(names)  # it stopped rather than fetch what it could not store
