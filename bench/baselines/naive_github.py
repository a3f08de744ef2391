"""A naive GitHub spider for the budget benchmark: one token, no ETags, no look at the rate-limit headers.

``scrapy runspider bench/baselines/naive_github.py -a api=URL -a token=T -a repos=o/r,… -a users=a,b -o out.jsonl``
Stock Scrapy settings; it fetches what the platform's spider fetches for the same input (profiles, repository
lists, repositories, owners, commit pages following ``Link``) and yields the raw JSON objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class NaiveGithubSpider(scrapy.Spider):
    name = "naive_github"

    def __init__(self, api: str, token: str, repos: str = "", users: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api.rstrip("/") + "/"
        self.token = token
        self.repos = [r for r in repos.split(",") if r]
        self.users = [u for u in users.split(",") if u]

    def get(self, path_or_url: str, callback: Any) -> scrapy.Request:
        url = path_or_url if "://" in path_or_url else self.api + path_or_url
        return scrapy.Request(
            url, callback=callback, headers={"Authorization": f"token {self.token}"}, dont_filter=True
        )

    async def start(self) -> AsyncIterator[Any]:
        for login in self.users:
            yield self.get(f"users/{login}", self.parse_item)
            yield self.get(f"users/{login}/repos?per_page=100", self.parse_list)
        for repo in self.repos:
            yield self.get(f"repos/{repo}", self.parse_item)
            yield self.get(f"users/{repo.split('/')[0]}", self.parse_item)
            yield self.get(f"repos/{repo}/commits?per_page=100", self.parse_list)

    def parse_item(self, response: Any) -> Iterator[Any]:
        yield json.loads(response.body)

    def parse_list(self, response: Any) -> Iterator[Any]:
        yield from json.loads(response.body)
        link = _NEXT.search(response.headers.get(b"Link", b"").decode())
        if link:
            yield self.get(link.group(1), self.parse_list)
