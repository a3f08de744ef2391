"""The TheOrg source: company org charts read from Next.js pages, plain HTTP first, a browser when needed.

``source`` declares it (namespace, policy, settings, components); ``records`` holds its record type;
``pages`` the parsers of the page shapes (``__NEXT_DATA__``, App Router flight data, JSON-LD, a rendered
chart); ``browser`` the browser contexts and their proxies; ``spider`` the spider.
"""
