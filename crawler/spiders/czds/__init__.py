"""ICANN's Centralized Zone Data Service: daily zone files, kept raw, parsed, and diffed day over day."""
