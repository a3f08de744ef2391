"""Build shim for the egg-based deploy tools; pyproject.toml stays the single source of truth.

``scrapyd-deploy`` (scrapyd-client) and ``shub deploy`` both run ``python setup.py clean -a bdist_egg``
next to ``scrapy.cfg``. When no ``setup.py`` exists they write their own (``name='project'``,
``find_packages()``), which would package tests/ and bench/, drop the package data the metadata DB needs
(``crawler/meta/*.sql``) and leave a generated file in the checkout. With this shim the egg gets its name,
version, packages, package data, dependencies and the ``scrapy`` entry point (``settings =
crawler.settings``, which scrapyd and Scrapy Cloud use to find the settings) from pyproject.toml.
"""

from setuptools import setup

setup()
