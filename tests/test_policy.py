"""Policy lives with the source (DESIGN §3.4): every spider declares it, and it stays sane."""

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings

from crawler.items import Record
from crawler.policy import SourcePolicy
from crawler.spiders.base import SourceSpider

SPIDERS = [
    SpiderLoader.from_settings(get_project_settings()).load(name)
    for name in SpiderLoader.from_settings(get_project_settings()).list()
]


def test_there_are_spiders():
    assert any(spider.name == "npm" for spider in SPIDERS)


@pytest.mark.parametrize("spider", SPIDERS, ids=lambda s: s.name)
def test_every_spider_declares_its_policy(spider):
    assert issubclass(spider, SourceSpider), "build spiders on crawler.spiders.base.SourceSpider"
    assert isinstance(spider.declaration.policy, SourcePolicy), f"{spider.name} must declare its own policy"
    policy = spider.declaration.policy
    assert 1 <= policy.concurrency <= 100, "concurrency must stay under the sources' secondary limits"
    assert policy.retries >= 1 and policy.backoff_base > 0
    assert 429 in policy.retry_http_codes and 503 in policy.retry_http_codes
    assert 0 < policy.max_response_bytes <= 1024**3
    if policy.proxies_setting is not None:
        assert policy.proxies_setting.startswith(spider.source.upper())


@pytest.mark.parametrize("spider", SPIDERS, ids=lambda s: s.name)
def test_policy_becomes_the_spider_settings(spider):
    settings = spider.custom_settings
    assert settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == spider.declaration.policy.concurrency
    assert settings["RETRY_TIMES"] == spider.declaration.policy.retries
    assert settings["DOWNLOAD_MAXSIZE"] == spider.declaration.policy.max_response_bytes


@pytest.mark.parametrize("spider", SPIDERS, ids=lambda s: s.name)
def test_every_spider_declares_its_record_types(spider):
    assert spider.records, f"{spider.name} must list the record types it yields"
    for record_type in spider.records:
        assert Record.registry[record_type.namespace] is record_type
        assert record_type.key and all(k in record_type.model_fields for k in record_type.key)


@pytest.mark.parametrize("spider", SPIDERS, ids=lambda s: s.name)
def test_spider_settings_keep_the_platform_components(spider):
    """A spider's custom_settings must not replace the project's component dicts (Scrapy does not merge them)."""
    settings = get_project_settings()
    settings.setdict(spider.custom_settings or {}, priority="spider")
    middlewares = settings.getwithbase("DOWNLOADER_MIDDLEWARES")
    assert middlewares["scrapy.downloadermiddlewares.retry.RetryMiddleware"] is None
    assert middlewares["crawler.middlewares.retry.BackoffRetryMiddleware"]
    assert middlewares["crawler.middlewares.proxies.ProxyRotationMiddleware"]
    pipelines = settings.getwithbase("ITEM_PIPELINES")
    assert (
        pipelines["crawler.pipelines.store.StorePipeline"] > pipelines["crawler.pipelines.normalize.NormalizePipeline"]
    )
