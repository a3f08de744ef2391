"""Record types: one per namespace. Importing this package registers them all."""

import importlib
import pkgutil

from crawler.items.base import METADATA_FIELDS, JsonText, Record, arrow_schema

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "fields"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METADATA_FIELDS", "JsonText", "Record", "arrow_schema"]
