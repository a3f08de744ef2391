"""Benchmarks of the platform against stock Scrapy and a raw client (scripts, not tests)."""
