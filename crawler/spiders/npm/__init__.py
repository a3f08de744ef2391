"""The npm source: packuments by name and the replication ``_changes`` feed.

``source`` declares it (namespaces, modes, policy, settings, schedule); ``records`` holds its record type;
``spider`` the spider.
"""
