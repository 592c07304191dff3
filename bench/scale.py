"""Scale benchmark: the list, /stats and the similar-photo lookup at 1,000,000 issues on PostgreSQL.

    .venv/bin/python bench/scale.py [--sizes 10000,1000000] [--rounds 100] [--lookups 200] [--keep]

It prints figures and never fails on a missed target (exit status 0 unless something broke).
For each size, on this machine, one size at a time:

1. loads a fresh PostgreSQL database exactly as bench/dashboard.py does (its loader: COPY, a
   district of 8 offices, 40 communities and 160 grid cells, N issues arriving at 1,000 a week
   with synthetic lifecycles, ~5 events and 3 photo rows each; the photos' pHashes are random
   64-bit values with their band columns): 1,000,000 issues are about 19 years of history,
   4.7 million events and 3 million photos;
2. starts the real server on it and sends, in rounds over one keep-alive connection, what a
   dashboard polls (bench/dashboard.py's `measure`: /healthz as the floor, /stats of this week,
   the list page `GET /issues?limit=50` in its full and compact views, a 304, the rankings);
3. times, in this process, the similar-photo lookup an upload runs
   (`checks.similar_photos(session, phash, 4, issue_id=…)`) for new random hashes, one in ten
   a 1–4 bit variant of a stored one (so that some lookups find a match);
4. prints medians, and the growth from the smallest size to the largest: targets ≤ 1.5× for
   the list and /stats, ≤ 3× for the lookup (issue #19).

`--replicas 1,2` measures instead photos/s with 1 and 2 replicas on PostgreSQL + S3 (moto),
the load from a separate client process: bench/replicas.py, which says how.

With `--keep` each size's database is kept (gridproof_scale_10k, gridproof_scale_1m) and
reused by the next `--keep` run, migrated to the head first: a million issues load once.

The client and the server share this machine's cores (2 here, with other work on them): the
figures include the client's time and the other load, which is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "bench"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import dashboard  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.db import get_engine, migrate  # noqa: E402
from app.services import checks  # noqa: E402

TARGET_GROWTH = 1.5  # list and /stats
TARGET_LOOKUP_GROWTH = 3.0  # similar-photo lookup
MAX_DISTANCE = 4
PASSES = 2
POLLED = {
    dashboard.STATS: "GET /api/v1/stats",
    dashboard.LIST: "GET /api/v1/issues?limit=50",
    dashboard.COMPACT: "GET /api/v1/issues?limit=50&view=compact",
    dashboard.REVALIDATE: "GET /api/v1/stats + If-None-Match",
    dashboard.RANKINGS: "GET /api/v1/rankings (no target)",
}


def near(phash: str, rng: random.Random) -> str:
    """A hash 1–4 bits from `phash` (a re-encoded copy of the same photo)."""
    value = int(phash, 16)
    for position in rng.sample(range(64), rng.randint(1, MAX_DISTANCE)):
        value ^= 1 << position
    return f"{value:016x}"


def lookups(url: str, count: int) -> tuple[list[float], int]:
    """Milliseconds per similar-photo lookup (each the best of PASSES, as bench/similar.py
    takes them: the machine is shared), and how many found a stored photo."""
    rng = random.Random(7)
    engine = get_engine(url)
    with Session(engine) as session:
        stored = [
            row[0]
            for row in session.execute(
                text("SELECT phash FROM photos ORDER BY id LIMIT 1000 OFFSET 500")
            )
        ]
        issue_id = session.execute(text("SELECT max(id) FROM issues")).scalar_one()
        probes = [
            near(rng.choice(stored), rng) if i % 10 == 0 else f"{rng.getrandbits(64):016x}"
            for i in range(count + 20)
        ]
        best = [float("inf")] * len(probes)
        found = 0
        for attempt in range(PASSES):
            for i, phash in enumerate(probes):
                started = time.perf_counter()
                similar = checks.similar_photos(session, phash, MAX_DISTANCE, issue_id=issue_id)
                best[i] = min(best[i], (time.perf_counter() - started) * 1000)
                found += bool(similar) and attempt == 0 and i >= 20
            session.rollback()
    return best[20:], found  # the first ones warmed the caches


def kept_name(size: int) -> str:
    """The database `--keep` leaves behind for a size: gridproof_scale_1m, gridproof_scale_10k."""
    return "gridproof_scale_" + (f"{size // 10**6}m" if size % 10**6 == 0 else f"{size // 1000}k")


@contextmanager
def database(size: int, keep: bool) -> Iterator[str]:
    """A loaded database of `size` issues: fresh (dropped after), or with `keep` the one a
    previous `--keep` run left (migrated to the head first, so that a new migration runs on
    the loaded rows), else loaded now and left behind."""
    if not keep:
        with dashboard.fresh_database(size) as url:
            load(url, size)
            yield url
        return
    name = kept_name(size)
    url = dashboard.database_url(name)
    try:
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            issues = conn.execute("SELECT count(*) FROM issues").fetchone()
    except psycopg.Error:
        issues = None
    if issues is None or issues[0] != size:
        dashboard.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        dashboard.admin(f"CREATE DATABASE {name}")
        load(url, size)
    else:
        started = time.perf_counter()
        migrate(url)
        print(f"reusing {name} (migrated to the head in {time.perf_counter() - started:.0f} s)")
    yield url


def load(url: str, size: int) -> None:
    started = time.perf_counter()
    migrate(url)
    counts = dashboard.load_postgres(url, size, datetime.now(UTC))
    print(
        f"loaded {counts[0]:,} issues, {counts[1]:,} events, {counts[2]:,} photo rows in "
        f"{time.perf_counter() - started:.0f} s (load average {dashboard.load_average()})",
        flush=True,
    )


def run_size(
    size: int, rounds: int, warmup: int, lookup_count: int, keep: bool
) -> dict[str, float]:
    print(f"\n== {size:,} issues on postgresql ==", flush=True)
    with database(size, keep) as url, tempfile.TemporaryDirectory() as uploads:
        token = dashboard.token_for(url, f"bench{os.getpid()}")
        with dashboard.server(url, uploads) as base:
            timings, notes = dashboard.measure(base, token, rounds, warmup)
        print(f"/stats of this week: {notes.pop('stats_body')}")
        for name, note in notes.items():
            print(f"  {name}: {note}")
        medians = {name: statistics.median(values) for name, values in timings.items() if values}
        times, found = lookups(url, lookup_count)
        medians["lookup"] = statistics.median(times)
        print(
            f"similar-photo lookup: median {medians['lookup']:.2f} ms, p95 "
            f"{sorted(times)[int(0.95 * len(times))]:.2f} ms, {found} of {len(times)} found one",
            flush=True,
        )
        return medians


def report(results: dict[int, dict[str, float]]) -> None:
    sizes = sorted(results)
    small, big = sizes[0], sizes[-1]
    print("\nMedians (ms; client-side for the HTTP requests, in-process for the lookup):")
    header = "".join(f"{size:>14,}" for size in sizes)
    print(f"  {'':<44}{header}")
    labels = {dashboard.FLOOR: "GET /healthz (floor)", **POLLED, "lookup": "similar-photo lookup"}
    for name, label in labels.items():
        values = "".join(f"{results[size].get(name, float('nan')):>14.2f}" for size in sizes)
        print(f"  {label:<44}{values}")
    if small == big:
        return
    print(
        f"\nGrowth {small:,} → {big:,} (medians). The machine drifts between the two sizes (other"
        f" work shares it), so the HTTP requests are also given in units of the floor measured"
        f" in the same run; the verdict is on that:"
    )
    targets = {
        dashboard.LIST: TARGET_GROWTH,
        dashboard.COMPACT: TARGET_GROWTH,
        dashboard.STATS: TARGET_GROWTH,
        dashboard.REVALIDATE: None,
        dashboard.RANKINGS: None,
        "lookup": TARGET_LOOKUP_GROWTH,
    }
    floor = results[big][dashboard.FLOOR] / results[small][dashboard.FLOOR]
    print(f"  {'':<44} {'raw':>7} {'÷ floor':>8}")
    for name, target in targets.items():
        a, b = results[big].get(name), results[small].get(name)
        if a is None or b is None:
            continue
        growth = a / b
        # The lookup runs in this process, without the server: no floor to divide by.
        judged = growth if name == "lookup" else growth / floor
        relative = "" if name == "lookup" else f"{judged:.2f}×"
        verdict = "" if target is None else f"(≤ {target:g}×): "
        verdict += ("met" if judged <= target else "MISSED") if target else ""
        print(f"  {labels[name]:<44} {growth:6.2f}× {relative:>8} {verdict}")
    print(f"  {'(the floor itself: the drift)':<44} {floor:6.2f}×")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each size's database (gridproof_scale_1m …) and reuse it when run again",
    )
    parser.add_argument(
        "--replicas",
        help="instead: photos/s with these replica counts (e.g. 1,2) on PostgreSQL + S3 "
        "(bench/replicas.py; run it for its options)",
    )
    args = parser.parse_args()
    if args.replicas:
        import replicas

        return replicas.main(["--replicas", args.replicas])
    cpus = os.cpu_count()
    print(f"{cpus} CPUs, load average {dashboard.load_average()} (other work shares this machine)")
    started = time.perf_counter()
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        results[size] = run_size(size, args.rounds, args.warmup, args.lookups, args.keep)
    report(results)
    print(
        f"\n(total {time.perf_counter() - started:.0f} s; load average {dashboard.load_average()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
