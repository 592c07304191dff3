"""Similar-photo lookup benchmark: one new photo checked against 10,000 and 1,000,000 stored hashes.

    .venv/bin/python bench/similar.py [--sizes 10000,1000000] [--queries 200] [--no-postgres]

It prints figures and never fails on a missed target (exit status 0 unless something broke).
For each database (a fresh SQLite file, and PostgreSQL when it answers at GRIDPROOF_BENCH_PG,
default postgresql://postgres@127.0.0.1:5432/postgres, in a database of its own that is dropped
at the end) it:

1. migrates the schema with `app.db.migrate`, adds one org unit, one user and two issues;
2. bulk-inserts synthetic photo rows into the first issue (random 64-bit pHashes, uniformly
   distributed, with their bands from `checks.phash_bands`; executemany on SQLite, COPY on
   PostgreSQL) until the table holds each size in turn;
3. times `checks.similar_photos(session, phash, 4, issue_id=<second issue>)` (what an upload
   runs) for new random hashes, one in ten of which has a stored copy 1–4 bits away, and prints
   the median and p95 in ms, how many rows the band index proposed (candidates) and how many
   matched, and the ratio of the largest size to the smallest (target: ≤ 3×).

Uniform hashes are the friendly case for a band index: real photos' hashes cluster (a city's
walls look alike), so real candidate counts are higher at the same size.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import func, text  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from app.db import get_engine, migrate  # noqa: E402
from app.models import Issue  # noqa: E402
from app.services import auth, checks, orgs  # noqa: E402

PG_ADMIN = os.environ.get("GRIDPROOF_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MAX_DISTANCE = 4
BATCH = 50_000
PASSES = 2
COLUMNS = (
    "issue_id",
    "kind",
    "sha256",
    "content_type",
    "bytes",
    "width",
    "height",
    "uploaded_at",
    "uploaded_by_id",
    "exif",
    "flags",
    "phash",
    "phash_b0",
    "phash_b1",
    "phash_b2",
    "dispatch_round",
)


def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def near(phash: str, rng: random.Random) -> str:
    """A hash 1–4 bits from `phash` (a re-encoded copy of the same photo)."""
    value = int(phash, 16)
    for position in rng.sample(range(64), rng.randint(1, MAX_DISTANCE)):
        value ^= 1 << position
    return f"{value:016x}"


def rows(
    start: int, count: int, issue_id: int, user_id: int, hashes: Iterator[str], sqlite: bool
) -> Iterator[tuple[object, ...]]:
    uploaded = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    at: object = uploaded.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else uploaded
    for n in range(start, start + count):
        phash = next(hashes)
        yield (
            issue_id,
            "before",
            f"{n:064x}",
            "image/jpeg",
            1_000_000,
            4000,
            3000,
            at,
            user_id,
            "{}",
            "[]",
            phash,
            *checks.phash_bands(phash),
            0,
        )


def insert_sqlite(url: str, batch: list[tuple[object, ...]]) -> None:
    raw = get_engine(url).raw_connection()
    try:
        cursor = raw.cursor()
        placeholders = ", ".join("?" for _ in COLUMNS)
        cursor.execute("BEGIN")
        cursor.executemany(
            f"INSERT INTO photos ({', '.join(COLUMNS)}) VALUES ({placeholders})", batch
        )
        cursor.execute("COMMIT")
    finally:
        raw.close()


def insert_postgres(url: str, batch: list[tuple[object, ...]]) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY photos ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in batch:
                copy.write_row(row)
        conn.commit()


@contextmanager
def indexes_rebuilt(url: str, sqlite: bool) -> Iterator[None]:
    """Drop the photos table's secondary indexes for a bulk load, then build them again as the
    migrations defined them (same names, same SQL): far faster than a million random inserts
    into seven B-trees, and the queries afterwards see the same schema."""
    engine = get_engine(url)
    with engine.begin() as connection:
        if sqlite:
            found = connection.execute(
                text(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE type = 'index' AND tbl_name = 'photos' AND sql IS NOT NULL"
                )
            ).all()
        else:
            found = connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'photos' AND indexname <> 'photos_pkey'"
                )
            ).all()
        for name, _sql in found:
            connection.execute(text(f"DROP INDEX {name}"))
    try:
        yield
    finally:
        with engine.begin() as connection:
            for _name, sql in found:
                connection.execute(text(sql))
            connection.execute(text("ANALYZE"))


def fill(
    url: str, sqlite: bool, issue_id: int, user_id: int, start: int, count: int, rng: random.Random
) -> float:
    """Insert `count` photo rows; returns the seconds it took (index builds included)."""
    insert: Callable[[str, list[tuple[object, ...]]], None] = (
        insert_sqlite if sqlite else insert_postgres
    )
    hashes = iter(lambda: random_hash(rng), None)
    began = time.perf_counter()
    with indexes_rebuilt(url, sqlite):
        done = 0
        while done < count:
            size = min(BATCH, count - done)
            insert(url, list(rows(start + done, size, issue_id, user_id, hashes, sqlite)))
            done += size
    return time.perf_counter() - began


def plant_copies(
    url: str,
    sqlite: bool,
    issue_id: int,
    user_id: int,
    start: int,
    queries: list[str],
    rng: random.Random,
) -> int:
    """Store a near copy of every tenth query hash; returns how many were stored."""
    originals = iter([near(q, rng) for q in queries[::10]])
    count = len(queries[::10])
    insert = insert_sqlite if sqlite else insert_postgres
    insert(url, list(rows(start, count, issue_id, user_id, originals, sqlite)))
    return count


def setup(url: str) -> tuple[int, int, int]:
    """Migrate; one org unit, one user, two issues. Returns (stored issue, asking issue, user)."""
    migrate(url)
    with Session(get_engine(url), expire_on_commit=False) as session:
        orgs.add_org(session, "BENCH", "基准", "district", None)
        user, _token = auth.create_user(session, "bench", "worker", "BENCH")
        ids = []
        for code in ("JK-BENCH-0001", "JK-BENCH-0002"):
            issue = Issue(
                code=code,
                category_code="other",
                status="reported",
                lat=34.75,
                lon=113.78,
                location_source="manual",
                org_unit_id=user.org_unit_id,
                reported_by_id=user.id,
                reported_at=datetime.now(UTC),
            )
            session.add(issue)
            session.commit()
            ids.append(issue.id)
        assert user.id is not None and ids[0] is not None and ids[1] is not None
        return ids[0], ids[1], user.id


def _band_query(phash: str, asking_issue: int) -> Any:
    """What similar_photos runs for `phash` (the band probes, united), with its parameters."""
    return checks._SIMILAR[True].params(**checks.band_probes(phash), issue_id=asking_issue)


def candidates(session: Session, phash: str, asking_issue: int) -> int:
    """Rows the band indexes propose for `phash` (what similar_photos then compares bit by bit)."""
    proposed = _band_query(phash, asking_issue).subquery()
    return int(session.exec(select(func.count()).select_from(proposed)).one())


def plan(session: Session, sqlite: bool, phash: str, asking_issue: int) -> str:
    query = _band_query(phash, asking_issue)
    sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
    if sqlite:
        lines = session.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
        return "; ".join(str(line[-1]) for line in lines)
    lines = session.execute(text(f"EXPLAIN {sql}")).scalars().all()
    return "; ".join(line.strip() for line in lines if "Scan" in line)


def timed(call: Callable[[str], object], queries: list[str], passes: int) -> list[float]:
    """Per query, the best of `passes` runs in ms (the machine is shared: keep the noise out)."""
    best = [math.inf] * len(queries)
    for _ in range(passes):
        for i, phash in enumerate(queries):
            began = time.perf_counter()
            call(phash)
            best[i] = min(best[i], (time.perf_counter() - began) * 1000)
    return sorted(best)


def percentile(values: list[float], fraction: float) -> float:
    return values[round(fraction * (len(values) - 1))]


def measure(url: str, sqlite: bool, asking_issue: int, queries: list[str]) -> dict[str, Any]:
    with Session(get_engine(url)) as session:

        def similar(phash: str) -> list[checks.SimilarPhoto]:
            return checks.similar_photos(session, phash, MAX_DISTANCE, issue_id=asking_issue)

        for phash in queries[:20]:  # warm the caches
            similar(phash)
        times = timed(similar, queries, PASSES)
        found = sum(bool(similar(phash)) for phash in queries)
        proposed = [candidates(session, phash, asking_issue) for phash in queries]
        query_plan = plan(session, sqlite, queries[0], asking_issue)
        session.rollback()
    return {
        "median": statistics.median(times),
        "p95": percentile(times, 0.95),
        "candidates": statistics.mean(proposed),
        "found": found,
        "plan": query_plan,
    }


def run(name: str, url: str, sizes: list[int], n_queries: int) -> None:
    sqlite = url.startswith("sqlite")
    rng = random.Random(2026)
    stored_issue, asking_issue, user_id = setup(url)
    print(f"\n== {name}")
    results = {}
    stored = 0
    for size in sizes:
        queries = [random_hash(rng) for _ in range(n_queries)]
        planted = plant_copies(url, sqlite, stored_issue, user_id, stored, queries, rng)
        stored += planted
        seconds = fill(url, sqlite, stored_issue, user_id, stored, size - stored, rng)
        print(f"   filled to {size:>9,} rows in {seconds:6.1f} s")
        stored = size
        result = measure(url, sqlite, asking_issue, queries)
        results[size] = result
        print(
            f"   {size:>9,} stored: median {result['median']:7.2f} ms   p95 {result['p95']:7.2f} ms"
            f"   candidates/query {result['candidates']:7.1f}"
            f"   matched {result['found']}/{n_queries} (planted {planted})"
        )
    print(f"   plan: {results[sizes[-1]]['plan']}")
    small, large = results[sizes[0]], results[sizes[-1]]
    ratio = large["median"] / small["median"]
    verdict = "within" if ratio <= 3 else "OVER"
    print(
        f"   ratio {sizes[-1]:,} / {sizes[0]:,}: median {ratio:.1f}×"
        f" (p95 {large['p95'] / small['p95']:.1f}×), {verdict} the 3× target"
    )


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as folder:
        url = f"sqlite:///{folder}/bench.db"
        yield url
        get_engine(url).dispose()


@contextmanager
def postgres_database() -> Iterator[str | None]:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3, autocommit=True) as conn:
            name = f"gp_bench_{uuid.uuid4().hex[:10]}"
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    except psycopg.Error as exc:
        print(f"\n== PostgreSQL: skipped ({str(exc).strip()})")
        yield None
        return
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000", help="stored rows, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="new photos checked per size")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    began = time.perf_counter()
    print(
        f"similar_photos(max_distance={MAX_DISTANCE}) for {args.queries} new photos at "
        f"{', '.join(f'{s:,}' for s in sizes)} stored hashes"
    )
    with sqlite_database() as url:
        run("SQLite", url, sizes, args.queries)
    if not args.no_postgres:
        with postgres_database() as pg_url:
            if pg_url is not None:
                run("PostgreSQL", pg_url, sizes, args.queries)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
