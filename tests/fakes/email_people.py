"""A labelled population of companies, people and addresses, for the email-pattern source's tests,
its benchmark and its Hunter fake. Seeded: the same arguments give the same data.

Each :class:`LabelledDomain` has a known pattern (the template most of its people's addresses follow)
and the ``(name, email)`` pairs a commit history would show: people who commit several times, names
written as handles, ``Family, Given``, in capitals, with a title or a middle name, in Cyrillic, Greek,
Han or Hangul script (addresses romanized by local custom, not by the library the engine uses),
compound and particle family names, accented and umlauted names (``Müller`` as ``mueller``), addresses
that follow another template or none (nicknames, handles), and pairs that say nothing of the company
(webmail, ``noreply``, bots, role accounts).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

#: the label distribution: a company's pattern (deliberately not the engine's prior)
PATTERN_WEIGHTS: dict[str, float] = {
    "{first}.{last}": 0.30,
    "{f}{last}": 0.15,
    "{first}": 0.12,
    "{first}{last}": 0.08,
    "{f}.{last}": 0.06,
    "{first}_{last}": 0.06,
    "{last}": 0.05,
    "{first}{l}": 0.04,
    "{last}.{first}": 0.04,
    "{last}{f}": 0.03,
    "{first}-{last}": 0.03,
    "{last}{first}": 0.02,
    "{first}.{l}": 0.01,
    "{f}{l}": 0.01,
}

# (as written, as an address writes it)
WESTERN_GIVEN = [
    ("John", "john"),
    ("Mary", "mary"),
    ("Peter", "peter"),
    ("Anna", "anna"),
    ("Michael", "michael"),
    ("Sarah", "sarah"),
    ("David", "david"),
    ("Laura", "laura"),
    ("James", "james"),
    ("Emma", "emma"),
    ("Thomas", "thomas"),
    ("Olivia", "olivia"),
    ("Daniel", "daniel"),
    ("Sophie", "sophie"),
    ("Lucas", "lucas"),
    ("Chloé", "chloe"),
    ("Jérôme", "jerome"),
    ("François", "francois"),
    ("Zoë", "zoe"),
    ("Jürgen", "juergen"),
    ("Björn", "bjoern"),
    ("Søren", "soren"),
    ("Łukasz", "lukasz"),
    ("Agnieszka", "agnieszka"),
    ("Giulia", "giulia"),
    ("Matteo", "matteo"),
    ("Jean-Pierre", "jean-pierre"),
    ("Anne-Marie", "annemarie"),
    ("Mohammed", "mohammed"),
    ("Aisha", "aisha"),
    ("Priya", "priya"),
    ("Rahul", "rahul"),
    ("Hiroshi", "hiroshi"),
    ("Yuki", "yuki"),
    ("Carlos", "carlos"),
    ("Lucía", "lucia"),
    ("Ines", "ines"),
    ("Noah", "noah"),
    ("Liam", "liam"),
    ("Mia", "mia"),
    ("Ólafur", "olafur"),
    ("Siobhán", "siobhan"),
    ("Nguyễn", "nguyen"),
    ("Ahmet", "ahmet"),
    ("Elif", "elif"),
]
WESTERN_FAMILY = [
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Brown", "brown"),
    ("Miller", "miller"),
    ("Wilson", "wilson"),
    ("Taylor", "taylor"),
    ("Anderson", "anderson"),
    ("Martin", "martin"),
    ("Garcia", "garcia"),
    ("Rossi", "rossi"),
    ("Müller", "mueller"),
    ("Schäfer", "schaefer"),
    ("Größe", "groesse"),
    ("Lefèvre", "lefevre"),
    ("Dubois", "dubois"),
    ("Nowak", "nowak"),
    ("Kowalski", "kowalski"),
    ("Jensen", "jensen"),
    ("O'Brien", "obrien"),
    ("Patel", "patel"),
    ("Sharma", "sharma"),
    ("Tanaka", "tanaka"),
    ("Suzuki", "suzuki"),
    ("Yılmaz", "yilmaz"),  # noqa: RUF001 (a Turkish dotless i, on purpose)
    ("Novák", "novak"),
    ("van der Berg", "vanderberg"),
    ("de Souza", "desouza"),
    ("von Trapp", "vontrapp"),
    ("García López", "garcia"),
    ("Fernández Ruiz", "fernandez"),
    ("Smith-Jones", "smith-jones"),
    ("MacDonald", "macdonald"),
    ("Kim", "kim"),
    ("Nguyen", "nguyen"),
    ("Haddad", "haddad"),
    ("Cohen", "cohen"),
    ("Andersson", "andersson"),
    ("Virtanen", "virtanen"),
    ("Costa", "costa"),
    ("Ferreira", "ferreira"),
    ("Horváth", "horvath"),
    ("Popescu", "popescu"),
    ("Jovanović", "jovanovic"),
]
CYRILLIC_GIVEN = [
    ("Дмитрий", "dmitry"),
    ("Сергей", "sergey"),
    ("Алексей", "alexey"),
    ("Юлия", "yulia"),
    ("Наталья", "natalia"),
    ("Андрей", "andrey"),
    ("Ольга", "olga"),
    ("Иван", "ivan"),
    ("Мария", "maria"),
    ("Евгений", "evgeny"),
    ("Ксения", "ksenia"),
    ("Михаил", "mikhail"),
    ("Татьяна", "tatiana"),
    ("Юрий", "yury"),
    ("Павел", "pavel"),
]
CYRILLIC_FAMILY = [
    ("Иванов", "ivanov"),
    ("Смирнов", "smirnov"),
    ("Кузнецов", "kuznetsov"),
    ("Попова", "popova"),
    ("Соколов", "sokolov"),
    ("Лебедева", "lebedeva"),
    ("Козлов", "kozlov"),
    ("Новиков", "novikov"),
    ("Морозова", "morozova"),
    ("Волков", "volkov"),
    ("Щербаков", "shcherbakov"),
    ("Зайцева", "zaitseva"),
    ("Жуков", "zhukov"),
    ("Орлов", "orlov"),
    ("Федорова", "fedorova"),
]
GREEK_GIVEN = [("Γιώργος", "giorgos"), ("Νίκος", "nikos"), ("Μαρία", "maria"), ("Ελένη", "eleni"), ("Κώστας", "kostas")]
GREEK_FAMILY = [
    ("Παπαδόπουλος", "papadopoulos"),
    ("Αλεξίου", "alexiou"),
    ("Νικολάου", "nikolaou"),
    ("Γεωργίου", "georgiou"),
    ("Οικονόμου", "oikonomou"),
]
HAN_FAMILY = [
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
]
HAN_GIVEN = [
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀英", "xiuying"),
    ("晓明", "xiaoming"),
    ("建华", "jianhua"),
]
HANGUL_FAMILY = [("김", "kim"), ("이", "lee"), ("박", "park"), ("최", "choi"), ("정", "jung")]
HANGUL_GIVEN = [("민준", "minjun"), ("서연", "seoyeon"), ("지훈", "jihoon"), ("하은", "haeun"), ("도윤", "doyun")]
NICKNAMES = {
    "michael": "mike",
    "david": "dave",
    "thomas": "tom",
    "james": "jim",
    "daniel": "dan",
    "peter": "pete",
    "alexey": "lesha",
    "dmitry": "dima",
    "sergey": "sergio",
    "mikhail": "misha",
}

ROLE_LOCALS = ["info", "support", "admin", "sales", "hello", "team", "security", "press", "jobs", "billing"]
WEBMAIL = ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "protonmail.com", "qq.com", "163.com", "yandex.ru"]
BOTS = [
    ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.{host}"),
    ("renovate-bot", "bot@renovateapp.com"),
    ("CI Bot", "ci-bot@{domain}"),
    ("Jenkins", "jenkins@{domain}"),
    ("GitHub Actions", "actions@users.noreply.{host}"),
]
WORDS = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "hooli",
    "vandelay",
    "pied",
    "piper",
    "nakatomi",
    "oscorp",
    "massive",
    "dynamic",
    "blue",
    "north",
    "river",
    "quantum",
    "vertex",
    "nimbus",
    "lumen",
    "orbit",
    "zenith",
    "atlas",
    "ember",
    "harbor",
]
TLDS = ["com", "io", "de", "fr", "co.uk", "ru", "cn", "gr", "net", "org", "dev", "kr"]
NOREPLY_HOST = "noreply-git.example"  # any label with "noreply" marks the hosts of no-reply addresses


@dataclass
class Person:
    written: str  # the name as the commit shows it
    given: str  # as the address spells it
    family: str
    middle: str = ""


@dataclass
class LabelledDomain:
    domain: str
    pattern: str
    #: clean, mixed, noisy, few, non_latin: what kind of case it is
    kind: str
    people: int
    pairs: list[tuple[str | None, str]] = field(default_factory=list)


def render(template: str, person: Person) -> str:
    return (
        template.replace("{first}", person.given)
        .replace("{last}", person.family)
        .replace("{f}", person.given[:1])
        .replace("{l}", person.family[:1])
        .replace("{m}", person.middle[:1])
    )


def _person(rng: random.Random, script: str) -> Person:
    if script == "cyrillic":
        (g, ge), (f, fe) = rng.choice(CYRILLIC_GIVEN), rng.choice(CYRILLIC_FAMILY)
        return Person(f"{g} {f}", ge, fe)
    if script == "greek":
        (g, ge), (f, fe) = rng.choice(GREEK_GIVEN), rng.choice(GREEK_FAMILY)
        return Person(f"{g} {f}", ge, fe)
    if script == "han":
        (f, fe), (g, ge) = rng.choice(HAN_FAMILY), rng.choice(HAN_GIVEN)
        written = f + g if rng.random() < 0.7 else f"{ge.title()} {fe.title()}"
        return Person(written, ge, fe)
    if script == "hangul":
        (f, fe), (g, ge) = rng.choice(HANGUL_FAMILY), rng.choice(HANGUL_GIVEN)
        return Person(f + g, ge, fe)
    (g, ge), (f, fe) = rng.choice(WESTERN_GIVEN), rng.choice(WESTERN_FAMILY)
    person = Person(f"{g} {f}", ge, fe)
    roll = rng.random()
    if roll < 0.10:
        middle = rng.choice("ABCDEFGHJKLMNPRSTW")
        person.written, person.middle = f"{g} {middle}. {f}", middle.lower()
    elif roll < 0.15:
        person.written = f"{f}, {g}"
    elif roll < 0.19:
        person.written = person.written.upper()
    elif roll < 0.21:
        person.written = f"Dr. {g} {f}"
    return person


def _script(rng: random.Random, region: str) -> str:
    if region == "western":
        return "western"
    roll = rng.random()
    if roll < 0.3:
        return "western"  # every company has some
    return region


def labelled_domains(count: int = 240, seed: int = 0) -> list[LabelledDomain]:
    """``count`` companies with known patterns and the pairs their commits show (see the module doc)."""
    rng = random.Random(seed)
    templates, weights = zip(*PATTERN_WEIGHTS.items(), strict=True)
    out: list[LabelledDomain] = []
    used: set[str] = set()
    while len(out) < count:
        name = f"{rng.choice(WORDS)}{rng.choice(WORDS)}{len(out)}"
        domain = f"{name}.{rng.choice(TLDS)}"
        if domain in used:
            continue
        used.add(domain)
        pattern = rng.choices(templates, weights)[0]
        roll = rng.random()
        kind = (
            "few"
            if roll < 0.2
            else "mixed"
            if roll < 0.4
            else "noisy"
            if roll < 0.6
            else "non_latin"
            if roll < 0.8
            else "clean"
        )
        people = rng.randint(1, 2) if kind == "few" else rng.randint(3, 40)
        region = rng.choice(["cyrillic", "greek", "han", "hangul"]) if kind == "non_latin" else "western"
        other = rng.choice([t for t in templates if t != pattern])
        off_share = rng.uniform(0.1, 0.3) if kind == "mixed" else 0.03
        junk_share = rng.uniform(0.1, 0.3) if kind == "noisy" else 0.05
        case = LabelledDomain(domain, pattern, kind, people)
        for _ in range(people):
            person = _person(rng, _script(rng, region))
            roll = rng.random()
            if roll < off_share:
                local = render(other, person)
            elif roll < off_share + (0.08 if kind == "noisy" else 0.02):
                base = NICKNAMES.get(person.given, person.given[:3])
                local = rng.choice(
                    [f"{base}.{person.family}", f"{person.given[:1]}{person.family}{rng.randint(1, 99)}"]
                )
            else:
                local = render(pattern, person)
            written: str | None = person.written
            if rng.random() < (0.15 if kind == "noisy" else 0.05):
                written = local  # the name field holds a handle
            elif rng.random() < 0.03:
                written = None
            address = f"{local}@{domain}"
            for _ in range(min(int(rng.expovariate(0.3)) + 1, 30)):  # each person commits a few times
                case.pairs.append((written, address))
        junk = int(len(case.pairs) * junk_share) + (1 if kind == "noisy" else 0)
        for _ in range(junk):
            case.pairs.append(_junk(rng, domain))
        rng.shuffle(case.pairs)
        out.append(case)
    return out


def _junk(rng: random.Random, domain: str) -> tuple[str | None, str]:
    """A pair that says nothing about the company's pattern."""
    person = _person(rng, "western")
    kind = rng.randrange(4)
    if kind == 0:
        return person.written, f"{render('{first}.{last}', person)}@{rng.choice(WEBMAIL)}"
    if kind == 1:
        return rng.choice(["Support", "Info", person.written]), f"{rng.choice(ROLE_LOCALS)}@{domain}"
    if kind == 2:
        return person.written, f"{rng.randint(10**6, 10**8)}+{person.given}@users.{NOREPLY_HOST}"
    name, address = rng.choice(BOTS)
    return name, address.format(domain=domain, host=NOREPLY_HOST)


def commit_rows(rows: int, seed: int = 1, companies: int = 5000) -> Iterator[tuple[str | None, str]]:
    """``rows`` pairs as a large commit history shows them (people commit many times): for throughput."""
    cases = labelled_domains(companies, seed)
    rng = random.Random(seed)
    pool = [pair for case in cases for pair in case.pairs]
    for _ in range(rows):
        yield pool[rng.randrange(len(pool))]
