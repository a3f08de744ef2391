"""A crawl process loads every command and spider module: none may pull in the query engine or the API."""

import os
import subprocess
import sys

PROBE = """
import sys
from scrapy import cmdline
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings
settings = get_project_settings()
cmdline._get_commands_dict(settings, True)
loader = SpiderLoader.from_settings(settings)
[loader.load(name) for name in loader.list()]
print(sorted(m for m in ("duckdb", "fastapi", "uvicorn", "tqdm") if m in sys.modules))
"""


def test_crawl_processes_do_not_import_query_or_api_libraries():
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.settings"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
