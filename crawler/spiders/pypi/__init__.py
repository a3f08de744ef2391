"""The PyPI source: projects by name, every project of the simple index, or those whose serial changed.

``source`` declares it (namespaces, modes, policy, settings, schedule); ``records`` holds its record type;
``spider`` the spider.
"""
