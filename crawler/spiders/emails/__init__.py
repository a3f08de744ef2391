"""The email-pattern source: a company domain's address pattern, its confidence and the evidence.

``patterns`` infers patterns from (name, address) pairs (stored commits, maintainers), ``names`` parses
people's names; ``source`` declares the source, ``records`` its record, ``spider`` the spider, ``hunter``
and ``clearbit`` the adapters of the two APIs, ``middleware`` their keys and the Hunter credit budget.
"""
