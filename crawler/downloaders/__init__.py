"""Download handlers of the core, usable by any source (bulk files: :mod:`crawler.downloaders.files`)."""
