import pytest

from crawler.items.fields import normalize_repository_url, parse_person, string_list, string_map


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("git+https://github.com/owner/repo.git", "https://github.com/owner/repo"),
        ("git://github.com/owner/repo", "https://github.com/owner/repo"),
        ("git@github.com:owner/repo.git", "https://github.com/owner/repo"),
        ("ssh://git@gitlab.com/group/project.git", "https://gitlab.com/group/project"),
        ("github:owner/repo", "https://github.com/owner/repo"),
        ("bitbucket:team/thing", "https://bitbucket.org/team/thing"),
        ("owner/repo", "https://github.com/owner/repo"),
        ("https://www.github.com/owner/repo/tree/main/packages/x", "https://github.com/owner/repo"),
        ({"type": "git", "url": "https://github.com/owner/repo.git"}, "https://github.com/owner/repo"),
        ("https://example.test/some/where", "https://example.test/some/where"),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalize_repository_url(raw, expected):
    assert normalize_repository_url(raw) == expected


def test_parse_person_forms():
    assert parse_person("Ada <ada@x.test> (https://x.test)") == ("Ada", "ada@x.test")
    assert parse_person({"name": " Ada ", "email": ""}) == ("Ada", None)
    assert parse_person(["nope"]) == (None, None)


def test_lists_and_maps_tolerate_bad_shapes():
    assert string_list("a, b c") == ["a", "b", "c"]
    assert string_list({"a": 1}) == []
    assert string_map(["a"]) == {}
    assert string_map({"a": 1, "b": None}) == {"a": "1"}
