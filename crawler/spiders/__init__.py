"""One module per source; every spider builds on :class:`crawler.spiders.base.SourceSpider`."""
