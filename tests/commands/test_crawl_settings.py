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
