"""The GitHub source: profiles, repositories, commits, and commit search by email domain.

``source`` declares it (namespaces, policy, settings, its token-budget middleware); ``records`` holds its
record types; ``spider`` the spider; ``middleware`` the token budgets.
"""
