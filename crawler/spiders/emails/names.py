"""People's names as the parts an address template uses: given name, middle initials, family name.

Names come as people type them into commit metadata and profiles: ``Jean-Pierre Dupont``, ``Dupont,
Jean``, ``Dr. María José García López``, ``Ludwig van Beethoven``, ``王伟`` (family name first, no space),
``Дмитрий Иванов``. Every name is transliterated to ASCII with ``anyascii`` (ISC licence) and reduced to
lowercase letters, keeping the variants an address may use (a compound name with or without its hyphen,
a second family name or only the first, a family name with or without its particle).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from anyascii import anyascii

#: words that lead a family name (``van Beethoven``, ``de la Cruz``)
PARTICLES = frozenset(
    [
        "van",
        "von",
        "de",
        "der",
        "den",
        "da",
        "das",
        "di",
        "del",
        "della",
        "dos",
        "du",
        "la",
        "le",
        "ter",
        "ten",
        "bin",
        "ibn",
        "al",
        "el",
        "st",
        "mac",
        "zu",
        "af",
        "av",
    ]
)
TITLES = frozenset(
    ["mr", "mrs", "ms", "miss", "dr", "prof", "sir", "madam", "mme", "mlle", "herr", "frau", "eng", "ing"]
)
SUFFIXES = frozenset(["jr", "sr", "ii", "iii", "iv", "phd", "md", "esq", "mba", "msc", "bsc"])
#: customary spellings of the commonest Korean family names, which the Revised Romanization that
#: transliteration follows does not give (김 is "Gim" there, "Kim" in nearly every address)
HANGUL_FAMILY_SPELLINGS: dict[str, tuple[str, ...]] = {
    "김": ("kim",),
    "이": ("lee", "yi", "rhee"),
    "박": ("park", "pak"),
    "최": ("choi",),
    "정": ("jung", "chung"),
    "강": ("kang",),
    "조": ("cho",),
    "윤": ("yoon",),
    "장": ("jang", "chang"),
    "임": ("lim",),
    "한": ("han",),
    "오": ("oh",),
    "서": ("seo", "suh"),
    "신": ("shin",),
    "권": ("kwon",),
    "황": ("hwang",),
    "안": ("ahn",),
    "송": ("song",),
    "류": ("ryu", "yoo"),
    "홍": ("hong",),
    "전": ("jeon", "jun"),
    "고": ("ko",),
    "문": ("moon",),
}
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>|\"[^\"]*\"")
_SPACE = re.compile(r"[\s_]+")
_NOT_LETTER = re.compile(r"[^a-z-]")


def _is_cjk(char: str) -> bool:
    """Han, kana or Hangul: scripts whose names are written family name first, without spaces."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x3040 <= code <= 0x30FF
        or 0xAC00 <= code <= 0xD7AF
        or 0x20000 <= code <= 0x2A6DF
    )


def _ascii_token(token: str) -> str:
    """A name token as lowercase ASCII letters (a hyphen kept: it marks a compound)."""
    folded = anyascii(unicodedata.normalize("NFC", token)).lower().replace("'", "").replace("`", "")
    return _NOT_LETTER.sub("", folded).strip("-")


@dataclass(frozen=True, slots=True)
class Name:
    """A parsed name: lowercase ASCII tokens."""

    given: str
    family: str
    #: middle names (initials count: ``John Q. Public`` has middle ``q``)
    middle: tuple[str, ...] = ()
    #: other readings of the family name an address may use (second surname, without particle, ...)
    family_variants: tuple[str, ...] = ()

    def givens(self) -> tuple[str, ...]:
        """The given name as written, and a compound without its hyphen or reduced to its first part."""
        forms = [self.given]
        if "-" in self.given:
            forms += [self.given.replace("-", ""), self.given.split("-")[0]]
        return tuple(dict.fromkeys(f for f in forms if f))

    def families(self) -> tuple[str, ...]:
        forms = [self.family, *self.family_variants]
        forms += [f.replace("-", "") for f in forms if "-" in f]
        return tuple(dict.fromkeys(f for f in forms if f))


@lru_cache(maxsize=65536)
def parse_name(raw: str | None) -> Name | None:
    """The parts of a person's name, or None when it is no usable full name (empty, one word, a
    handle such as ``jdoe`` or ``john.doe``, an address, a bot)."""
    if not raw:
        return None
    text = _BRACKETED.sub(" ", unicodedata.normalize("NFKC", raw)).strip()
    if not text or "@" in text or "://" in text:
        return None
    if "," in text:
        # "Family, Given" (and "Given Family, Jr." keeps its order)
        head, _, tail = text.partition(",")
        tail_words = [w.strip(".").lower() for w in tail.split()]
        text = f"{tail} {head}" if tail_words and not all(w in SUFFIXES for w in tail_words) else head
    words = [w for w in _SPACE.split(text) if w]
    if len(words) == 1 and words[0] and all(_is_cjk(c) for c in words[0]):
        return _parse_cjk(words[0])
    if len(words) >= 2 and all(all(_is_cjk(c) for c in w) for w in words):
        # 王 伟: family name first, as written
        tokens = [_ascii_token(w) for w in words]
        return Name(given="".join(tokens[1:]), family=tokens[0]) if all(tokens) else None
    tokens = []
    for word in words:
        token = _ascii_token(word)
        bare = token.replace("-", "")
        if not bare or (bare in TITLES and not tokens) or (bare in SUFFIXES and tokens):
            continue
        tokens.append(token)
    if len(tokens) < 2:
        return None  # a mononym or a handle: it tells nothing about the given/family layout
    given, rest = tokens[0], tokens[1:]
    particle_start = next((i for i, t in enumerate(rest) if t in PARTICLES and i < len(rest) - 1), None)
    if particle_start is not None:
        middle, family_tokens = rest[:particle_start], rest[particle_start:]
    else:
        middle, family_tokens = rest[:-1], rest[-1:]
    family = "".join(family_tokens)
    variants = []
    if len(family_tokens) > 1:
        variants += [family_tokens[-1], "-".join(family_tokens)]  # "beethoven", "van-beethoven"
    if middle and particle_start is None and len(middle[-1]) > 1:
        # García López: the first of two family names, or both
        variants += [middle[-1], middle[-1] + family, middle[-1] + "-" + family]
    return Name(given=given, family=family, middle=tuple(middle), family_variants=tuple(variants))


def _parse_cjk(word: str) -> Name | None:
    """``王伟``: one syllable of family name, the rest given (each character transliterated on its own)."""
    syllables = [_ascii_token(c) for c in word]
    if len(syllables) < 2 or not all(syllables):
        return None
    return Name(
        given="".join(syllables[1:]), family=syllables[0], family_variants=HANGUL_FAMILY_SPELLINGS.get(word[0], ())
    )
