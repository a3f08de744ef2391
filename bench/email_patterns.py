"""Email-pattern inference: accuracy on a labelled synthetic set, and throughput over 1 M commit rows.

``python -m bench.email_patterns [--domains 400] [--seed 0] [--rows 1000000] [--threshold 0.6]``

Accuracy: :func:`tests.fakes.email_people.labelled_domains` makes companies with known patterns and the
(name, email) pairs their commits show (noisy names, non-Latin scripts, mixed patterns, few samples,
webmail/noreply/bot/role pairs). Printed for the engine (``crawler.spiders.emails.patterns``) and two
baselines run on the same pairs:

* ``most-frequent``: every domain gets the pattern most frequent over all labels (answers everywhere);
* ``majority-exact``: per domain, the template most addresses match exactly (no filters, no name
  parsing beyond first/last words, no transliteration, no smoothing, never abstains).

Columns: precision (top-1 accuracy where it answers), coverage (share of domains answered), and the
precision and coverage by kind of case. Then the PASS/FAIL target: engine precision ≥ 90 %.

Throughput: ``--rows`` pairs drawn from a larger population (people commit many times), inferred in a
child process (its own peak RSS, from ``os.wait4``), against a child that only reads the same rows
(the floor: what producing the rows costs). Printed: rows/s and the ratio, peak RSS of each.

Stored: ``--stored-rows`` such pairs written as Parquet batches of the namespace ``--namespace``
(default ``github/commits``: any namespace whose records declare ``people_columns``) in a scratch
storage folder, then read back through ``crawler.inputs.stored_people`` (DuckDB over the stored
files, as ``scrapy crawl emails -a from=…`` reads them): inference over the stored rows vs reading them
only, rows/s and peak RSS of each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from crawler.spiders.emails.patterns import TEMPLATES, decide, infer_patterns
from tests.fakes.email_people import labelled_domains

ROOT = Path(__file__).resolve().parent.parent
_WORD = re.compile(r"[a-z]+")


def engine(cases: list, threshold: float) -> dict[str, str | None]:
    inference = infer_patterns(pair for case in cases for pair in case.pairs)
    answers: dict[str, str | None] = {}
    for case in cases:
        found = inference.domains.get(case.domain)
        answers[case.domain] = (
            decide(found.counts, found.addresses, threshold=threshold).pattern if found is not None else None
        )
    return answers


def most_frequent(cases: list) -> dict[str, str | None]:
    top = Counter(case.pattern for case in cases).most_common(1)[0][0]
    return {case.domain: top for case in cases}


def majority_exact(cases: list) -> dict[str, str | None]:
    votes: dict[str, Counter] = defaultdict(Counter)
    for case in cases:
        for name, email in dict.fromkeys(case.pairs):
            local, _, domain = email.lower().rpartition("@")
            words = _WORD.findall((name or "").lower())
            if len(words) < 2:
                continue
            first, last = words[0], words[-1]
            for template in TEMPLATES:
                rendered = (
                    template.replace("{first}", first)
                    .replace("{last}", last)
                    .replace("{f}", first[:1])
                    .replace("{l}", last[:1])
                    .replace("{m}", words[1][:1] if len(words) > 2 else "")
                )
                if rendered == local:
                    votes[domain][template] += 1
    return {case.domain: (votes[case.domain].most_common(1)[0][0] if votes[case.domain] else None) for case in cases}


def score(cases: list, answers: dict[str, str | None]) -> dict[str, tuple[float, float, int]]:
    """kind -> (precision, coverage, domains); kind "all" for everything."""
    groups: dict[str, list] = defaultdict(list)
    for case in cases:
        groups["all"].append(case)
        groups[case.kind].append(case)
    out = {}
    for kind, members in groups.items():
        answered = [c for c in members if answers[c.domain] is not None]
        right = sum(answers[c.domain] == c.pattern for c in answered)
        out[kind] = (right / len(answered) if answered else 0.0, len(answered) / len(members), len(members))
    return out


def accuracy(domains: int, seed: int, threshold: float) -> bool:
    cases = labelled_domains(domains, seed)
    pairs = sum(len(c.pairs) for c in cases)
    print(f"labelled set: {domains} domains, {pairs} pairs, seed {seed}, threshold {threshold}")
    kinds = ["all", "clean", "mixed", "noisy", "non_latin", "few"]
    print(f"{'contender':<16}" + "".join(f"{k + ' P/C':>18}" for k in kinds))
    results = {}
    for label, answers in (
        ("engine", engine(cases, threshold)),
        ("most-frequent", most_frequent(cases)),
        ("majority-exact", majority_exact(cases)),
    ):
        results[label] = scores = score(cases, answers)
        cells = "".join(f"{scores[k][0]:>9.1%} /{scores[k][1]:>6.1%}" for k in kinds if k in scores)
        print(f"{label:<16}{cells}")
    precision = results["engine"]["all"][0]
    base = results["most-frequent"]["all"][0]
    print(
        f"engine precision {precision:.1%} vs most-frequent {base:.1%} (x{precision / base:.2f}), "
        f"vs majority-exact {results['majority-exact']['all'][0]:.1%}; "
        f"engine coverage {results['engine']['all'][1]:.1%}"
    )
    passed = precision >= 0.90
    print(f"target precision >= 90 % where it answers: {'PASS' if passed else 'FAIL'}")
    return passed


def write_stored(folder: Path, namespace: str, rows: int, seed: int, batch: int = 100_000) -> None:
    """``rows`` pairs as Parquet batches of ``namespace`` in the storage layout (columns the pairs do not
    fill: placeholders for required ones, nulls for the rest)."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from crawler.items import Record, arrow_schema
    from tests.fakes.email_people import commit_rows

    record_type = Record.registry[namespace]
    schema = arrow_schema(record_type)
    name_column, email_column = record_type.people_columns[0]
    now = datetime.now(UTC)
    day = folder / namespace / f"year={now:%Y}" / f"month={now:%m}" / f"day={now:%d}"
    day.mkdir(parents=True, exist_ok=True)
    pairs = commit_rows(rows, seed)
    for number, start in enumerate(range(0, rows, batch)):
        chunk = [next(pairs) for _ in range(min(batch, rows - start))]
        columns = []
        for field_ in schema:
            if field_.name == name_column:
                values: list = [name for name, _ in chunk]
            elif field_.name == email_column:
                values = [email for _, email in chunk]
            elif field_.nullable:
                values = [None] * len(chunk)
            elif pa.types.is_timestamp(field_.type):
                values = [now] * len(chunk)
            elif pa.types.is_integer(field_.type):
                values = [1] * len(chunk)
            elif pa.types.is_boolean(field_.type):
                values = [False] * len(chunk)
            elif pa.types.is_list(field_.type):
                values = [[]] * len(chunk)
            else:
                values = [f"{field_.name}-{start + i}" for i in range(len(chunk))]  # keys stay unique
            columns.append(pa.array(values, type=field_.type))
        table = pa.Table.from_arrays(columns, schema=schema)
        pq.write_table(table, day / f"batch_{int(now.timestamp())}_{number:04d}.parquet")


def stored_child(mode: str, folder: str, namespace: str) -> None:
    """Run in a child process: read (or infer over) what ``folder`` stores of ``namespace``."""
    from scrapy.settings import Settings

    from crawler.inputs import stored_people

    settings = Settings({"STORAGE_URI": folder})
    started = time.perf_counter()
    count = 0
    if mode == "infer":
        inference = infer_patterns(stored_people(settings, namespace))
        count = inference.pairs
        extra = f"domains={len(inference.domains)}"
    else:
        for _ in stored_people(settings, namespace):
            count += 1
        extra = "read-only"
    print(f"{count} {time.perf_counter() - started:.3f} {extra}")


def child(mode: str, rows: int, seed: int) -> None:
    """Run in a child process: read (or infer over) ``rows`` pairs, print rows and seconds."""
    from tests.fakes.email_people import commit_rows

    pairs = list(commit_rows(rows, seed))  # made before the clock starts: only the work is timed
    started = time.perf_counter()
    if mode == "infer":
        inference = infer_patterns(iter(pairs))
        for found in inference.domains.values():
            decide(found.counts, found.addresses, threshold=0.6)
        extra = f"domains={len(inference.domains)}"
    else:
        extra = f"addresses={len({email for _, email in pairs})}"
    seconds = time.perf_counter() - started
    print(f"{rows} {seconds:.3f} {extra}")


def measure(mode: str, rows: int, seed: int, *more: str) -> tuple[float, float, str]:
    """(rows/s, peak RSS MiB, extra) of one child."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.email_patterns",
            "--child",
            mode,
            "--rows",
            str(rows),
            "--seed",
            str(seed),
            *more,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read().split() if process.stdout else []
    if status != 0 or len(output) < 2:
        raise SystemExit(f"child {mode} failed ({status})")
    count, seconds = int(output[0]), float(output[1])
    return count / seconds, usage.ru_maxrss / 1024, " ".join(output[2:])


def throughput(rows: int, seed: int) -> None:
    floor_rate, floor_rss, floor_extra = measure("read", rows, seed)
    rate, rss, extra = measure("infer", rows, seed)
    print(f"throughput over {rows:,} (name, email) rows ({floor_extra}; {extra}):")
    print(f"  engine: {rate:,.0f} rows/s, peak RSS {rss:,.0f} MiB (the rows themselves included)")
    print(f"  read-only floor: {floor_rate:,.0f} rows/s, peak RSS {floor_rss:,.0f} MiB")
    print(f"  engine / floor: speed x{rate / floor_rate:.3f}, memory +{rss - floor_rss:,.0f} MiB")


def stored_throughput(rows: int, seed: int, namespace: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_stored(Path(folder), namespace, rows, seed)
        print(f"stored {rows:,} rows of {namespace} in {time.perf_counter() - started:.1f} s")
        floor_rate, floor_rss, _ = measure("stored-read", rows, seed, "--folder", folder, "--namespace", namespace)
        rate, rss, extra = measure("stored-infer", rows, seed, "--folder", folder, "--namespace", namespace)
    print(f"inference over {rows:,} stored rows of {namespace} through crawler.inputs ({extra}):")
    print(f"  engine: {rate:,.0f} rows/s, peak RSS {rss:,.0f} MiB")
    print(f"  read-only floor: {floor_rate:,.0f} rows/s, peak RSS {floor_rss:,.0f} MiB")
    print(f"  engine / floor: speed x{rate / floor_rate:.3f}, memory +{rss - floor_rss:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threshold", type=float, default=0.6)
    parser.add_argument("--stored-rows", type=int, default=0)
    parser.add_argument("--namespace", default="github/commits")
    parser.add_argument("--child", choices=("read", "infer", "stored-read", "stored-infer"))
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child in ("read", "infer"):
        child(args.child, args.rows, args.seed)
        return
    if args.child:
        stored_child(args.child.removeprefix("stored-"), args.folder, args.namespace)
        return
    passed = accuracy(args.domains, args.seed, args.threshold)
    if args.rows:
        throughput(args.rows, args.seed)
    if args.stored_rows:
        stored_throughput(args.stored_rows, args.seed, args.namespace)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
