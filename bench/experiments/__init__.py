"""Prototypes of proposed platform changes, loaded into a benchmark crawl through ``-s`` overrides only.

They subclass the platform's own components, so ``crawler/`` stays untouched while a change is measured.
"""
