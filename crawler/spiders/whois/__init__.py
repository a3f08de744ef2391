"""The WHOIS source: one normalized record per domain, from RDAP where the registry runs it, else port 43.

``source`` declares it (namespace, policy, settings, its own transport and middleware); ``records`` holds
the record type; ``rdap`` and ``text`` turn answers into :class:`~crawler.spiders.whois.domain.DomainData`;
``transport`` is the ``whois://`` download handler and the polite HTTP one; ``politeness`` the per-server
token buckets and throttle detection; ``spider`` the spider.
"""
