import pytest
from scrapy.exceptions import UsageError
from scrapy.utils.test import get_crawler

from crawler.sources import ArgumentError
from crawler.spiders.npm.spider import NpmSpider
from crawler.spiders.pypi.spider import PypiSpider


def test_names_from_arguments_and_file(tmp_path):
    names_file = tmp_path / "names.txt"
    names_file.write_text("c\n\n d \n")
    spider = NpmSpider(packages="a, b", packages_file=str(names_file))
    assert spider.names == ["a", "b", "c", "d"] and spider.mode == "named"


def test_mode_defaults_and_errors():
    assert PypiSpider().mode == "incremental"
    assert PypiSpider(mode="full").mode == "full"
    with pytest.raises(UsageError, match="unknown mode 'sideways'"):
        NpmSpider(mode="sideways")
    with pytest.raises(UsageError, match=r"mode=full\|incremental"):
        PypiSpider(mode="named")


def test_deployment_arguments_are_accepted_not_recorded_and_unknown_ones_refused():
    crawler = get_crawler(NpmSpider, {"NPM_REGISTRY_URL": "http://127.0.0.1:1/"})
    spider = NpmSpider.from_crawler(crawler, packages=" a, b ", _job="abc123", _api_token="s3cret")
    assert spider.names == ["a", "b"] and spider.job_id == "abc123"
    assert spider.arguments == {"packages": "a,b"}
    # not only `scrapy crawl` checks them: scrapyd and other runners create spiders this way
    with pytest.raises(ArgumentError, match=r"unknown argument -a note; arguments: packages"):
        NpmSpider.from_crawler(get_crawler(NpmSpider, {"NPM_REGISTRY_URL": "http://127.0.0.1:1/"}), note="x")


def test_shards_split_named_packages_stably_and_completely():
    names = ",".join(f"pkg-{i}" for i in range(200))
    shards = [NpmSpider(packages=names, shard=f"{i}/3").names for i in range(3)]
    assert sorted(name for shard in shards for name in shard) == sorted(f"pkg-{i}" for i in range(200))  # all, once
    assert all(40 < len(shard) < 90 for shard in shards)  # roughly even
    assert NpmSpider(packages=names, shard="1/3").names == shards[1]  # stable
    with pytest.raises(UsageError, match="i/n"):
        NpmSpider(packages="a", shard="x")
    with pytest.raises(UsageError, match="splits named packages"):
        PypiSpider(mode="full", shard="0/2")
