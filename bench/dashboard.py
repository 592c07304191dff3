"""Dashboard benchmark: /stats, a list page and a 304 against the framework floor, at 100k and 10k.

    .venv/bin/python bench/dashboard.py [--rounds N] [--sizes 100000,10000] [--database sqlite]

It prints figures and never fails on a missed target (exit status 0 unless something broke).
For each size, in one run on this machine:

1. creates a fresh PostgreSQL database (postgresql://postgres@127.0.0.1:5432, or
   GRIDPROOF_BENCH_PG; with `--database sqlite` an SQLite file, loaded with executemany instead
   of COPY, indexes kept), applies the migrations (`app.db.migrate`) and loads with COPY a district
   of 8 offices, 40 communities and 160 grid cells, its users, N issues, their events (report,
   accept, dispatch, submit_rectification, verify_fail, verify_pass, reject …; about 5 per
   issue) and 3·N photo rows. The issues arrive at a constant 1,000 a week, so 100,000 issues are
   about two years of history and 10,000 about ten weeks: a bigger table means a longer past,
   not a busier week. Their lifecycles are synthetic but follow the state machine: most are
   fixed before the deadline, one in ten fails verification once, a few are rejected or
   duplicates, about 1.5 % are forgotten and fixed weeks late (the overdue backlog). Photo rows
   and event hashes are placeholders (no files; the audit chains do not verify). Secondary
   indexes are dropped during the COPY and rebuilt after it, foreign keys are not checked
   during it (the rows are consistent by construction);
2. creates a district supervisor with `python -m app user add` for a token and starts the real
   server (`uvicorn app.main:app`, one worker, access log off, no checkpoint thread: see
   `server`) on that database;
3. sends, over one keep-alive connection (httpx.Client), sequential requests in rounds, each
   round one request of each kind: GET /healthz (the framework floor: a constant JSON),
   GET /api/v1/stats (this week), GET /api/v1/issues?limit=50, the same page in the dashboards'
   compact view (`&view=compact`), a revalidation of /stats with
   If-None-Match set to the ETag of a first GET (only if the server gives ETags), and, for
   information, GET /api/v1/rankings (this week's offices). Latency is measured at the client,
   request start to body read; median and p95 are printed;
4. stops the server and drops the database.

The client and the server share this machine's cores: the figures include the client's time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from app.db import migrate  # noqa: E402
from app.services.checks import phash_bands  # noqa: E402

ADMIN_DSN = os.environ.get("GRIDPROOF_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PER_WEEK = 1_000
OFFICES, COMMUNITIES, GRIDS = 8, 5, 4  # offices; communities per office; grid cells per community
LAT, LON = 34.75, 113.78

TARGET_304 = 2.0  # a 304 within 2× the floor
TARGET_HEAVY = 10.0  # /stats and a list page within 10× the floor at 100k
TARGET_GROWTH = 1.5  # no more than 1.5× slower at 100k than at 10k


# --- Synthetic data --------------------------------------------------------------------------


@dataclass
class Zone:
    """Ids of the loaded org units and users."""

    grids: list[int] = field(default_factory=list)
    # grid id → (community id, office id); office id → (worker id, supervisor id)
    above: dict[int, tuple[int, int]] = field(default_factory=dict)
    office_staff: dict[int, tuple[int, int]] = field(default_factory=dict)
    grid_worker: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)


def load_zone(db: Loader) -> Zone:
    zone = Zone()
    units: list[tuple[int, str, str, str, int | None, str]] = [
        (1, "D", "经开区", "district", None, "/1/")
    ]
    users: list[tuple[int, str, str, str, int]] = []
    next_id = 2
    for o in range(1, OFFICES + 1):
        office = next_id
        next_id += 1
        units.append((office, f"O{o}", f"第{o}办事处", "office", 1, f"/1/{office}/"))
        worker, supervisor = len(users) + 1, len(users) + 2
        users += [
            (worker, f"o{o}_worker", "worker", "worker", office),
            (supervisor, f"o{o}_super", "supervisor", "supervisor", office),
        ]
        zone.office_staff[office] = (worker, supervisor)
        for c in range(1, COMMUNITIES + 1):
            community = next_id
            next_id += 1
            code = f"O{o}C{c}"
            units.append(
                (community, code, f"{code}社区", "community", office, f"/1/{office}/{community}/")
            )
            for g in range(1, GRIDS + 1):
                grid = next_id
                next_id += 1
                path = f"/1/{office}/{community}/{grid}/"
                units.append((grid, f"{code}G{g}", f"{code}第{g}网格", "grid", community, path))
                zone.grids.append(grid)
                zone.above[grid] = (community, office)
                user_id = len(users) + 1
                users.append((user_id, f"g{grid}", "worker", "worker", grid))
                zone.grid_worker[grid] = user_id
    now = datetime.now(UTC)
    db.copy("org_units", "id, code, name, kind, parent_id, path", units)
    rows = []
    for user_id, username, display, role, org in users:
        rows.append((user_id, username, display, role, org, now))
        zone.names[user_id] = username
    db.copy("users", "id, username, display_name, role, org_unit_id, created_at", rows)
    db.set_sequence("org_units", len(units))
    db.set_sequence("users", len(users))
    return zone


ISSUE_COLUMNS = (
    "id, code, category_code, description, status, lat, lon, accuracy_m, location_source, "
    "address, org_unit_id, reported_by_id, reported_at, accepted_at, dispatched_at, deadline_at, "
    "rectified_at, rectified_by_id, closed_at, verified_by_id, dispatch_round, rework_count, "
    "quantity, duplicate_of_id, version, updated_at, change_seq"
)
EVENT_COLUMNS = (
    "issue_id, seq, at, actor_id, actor, action, from_status, to_status, note, data, "
    "prev_hash, hash"
)
PHOTO_COLUMNS = (
    "issue_id, kind, sha256, content_type, bytes, width, height, taken_at, uploaded_at, "
    "uploaded_by_id, exif, lat, lon, accuracy_m, location_source, flags, phash, "
    "phash_b0, phash_b1, phash_b2, note, dispatch_round"
)


def lifecycle(rng: random.Random, reported: datetime, hours: int) -> list[tuple[str, float]]:
    """(action, hours after the report) along the state machine, for one issue."""
    roll = rng.random()
    if roll < 0.04:
        return [("reject", rng.uniform(0.5, 8))]
    if roll < 0.07:
        return [("mark_duplicate", rng.uniform(0.5, 8))]
    if roll < 0.15:  # fixed on the spot (立行立改): reported rectified, then verified
        return [("verify_pass", rng.uniform(0.5, 24))]
    t = rng.uniform(0.2, 4)
    steps = [("accept", t)]
    t += rng.uniform(0.1, 6)
    steps.append(("dispatch", t))
    deadline = t + hours
    if rng.random() < 0.015:  # forgotten: fixed one to six weeks after the deadline
        t = deadline + rng.uniform(7, 42) * 24
    else:
        t += hours * min(3.0, rng.lognormvariate(-0.9, 0.6))
    steps.append(("submit_rectification", t))
    if rng.random() < 0.10:
        t += rng.uniform(1, 24)
        steps.append(("verify_fail", t))
        t += hours * rng.uniform(0.05, 0.6)
        steps.append(("submit_rectification", t))
    t += rng.uniform(0.5, 30)
    steps.append(("verify_pass", t))
    return [*steps, ("deadline", deadline)]


NEXT_STATUS = {
    "reject": "rejected",
    "mark_duplicate": "duplicate",
    "accept": "accepted",
    "dispatch": "dispatched",
    "submit_rectification": "rectified",
    "verify_fail": "dispatched",
    "verify_pass": "closed",
}


CHUNK = 10_000  # issues per round of COPYs (one COPY at a time per connection)


def load_issues(db: Loader, zone: Zone, count: int, now: datetime) -> None:
    rng = random.Random(count)
    categories = db.query("SELECT code, deadline_hours FROM categories")
    span = timedelta(weeks=count / PER_WEEK)
    start = now - span
    moments = sorted(start + span * rng.random() for _ in range(count))
    for first in range(0, count, CHUNK):
        issues, events, photos = [], [], []
        for issue_id, reported in enumerate(moments[first : first + CHUNK], start=first + 1):
            category, hours = categories[rng.randrange(len(categories))]
            grid = rng.choice(zone.grids)
            row, event_rows, photo_rows = one_issue(
                rng, zone, issue_id, reported, category, hours, grid, now
            )
            issues.append(row)
            events += event_rows
            photos += photo_rows
        db.copy("issues", ISSUE_COLUMNS, issues)
        db.copy("issue_events", EVENT_COLUMNS, events)
        db.copy("photos", PHOTO_COLUMNS, photos)
    db.set_sequence("issues", count)
    db.execute("UPDATE change_counter SET value = %s", (count,))


class Loader:
    """Where the synthetic rows go: PostgreSQL with COPY, or SQLite with executemany."""

    def copy(self, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        raise NotImplementedError

    def query(self, sql: str) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def execute(self, sql: str, params: tuple[object, ...]) -> None:
        raise NotImplementedError

    def set_sequence(self, table: str, value: int) -> None:
        """The table's id sequence after loading `value` rows with explicit ids."""


class PostgresLoader(Loader):
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def copy(self, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        statement = f"COPY {table} ({columns}) FROM STDIN"
        with self.conn.cursor() as cur, cur.copy(statement) as copy:  # type: ignore[arg-type]
            for row in rows:
                copy.write_row(row)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        return list(self.conn.execute(sql).fetchall())  # type: ignore[arg-type]

    def execute(self, sql: str, params: tuple[object, ...]) -> None:
        self.conn.execute(sql, params)  # type: ignore[arg-type]

    def set_sequence(self, table: str, value: int) -> None:
        self.conn.execute(f"SELECT setval('{table}_id_seq', %s)", (value,))  # type: ignore[arg-type]


class SqliteLoader(Loader):
    """SQLite stores times as UTC text (as app.models.base.UTCDateTime does through SQLAlchemy)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @staticmethod
    def _value(value: object) -> object:
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def copy(self, table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        marks = ", ".join("?" * len(columns.split(",")))
        self.conn.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            ([self._value(v) for v in row] for row in rows),
        )

    def query(self, sql: str) -> list[tuple[object, ...]]:
        return list(self.conn.execute(sql).fetchall())

    def execute(self, sql: str, params: tuple[object, ...]) -> None:
        self.conn.execute(sql.replace("%s", "?"), [self._value(p) for p in params])


def one_issue(
    rng: random.Random,
    zone: Zone,
    issue_id: int,
    reported: datetime,
    category: str,
    hours: int,
    grid: int,
    now: datetime,
) -> tuple[tuple[object, ...], list[tuple[object, ...]], list[tuple[object, ...]]]:
    community, office = zone.above[grid]
    worker, supervisor = zone.office_staff[office]
    reporter = zone.grid_worker[grid]
    plan = lifecycle(rng, reported, hours)
    on_the_spot = plan[0][0] == "verify_pass"
    status = "rectified" if on_the_spot else "reported"
    f: dict[str, object] = {
        "org": grid,
        "accepted_at": None,
        "dispatched_at": None,
        "deadline_at": None,
        "rectified_at": reported if on_the_spot else None,
        "rectified_by": reporter if on_the_spot else None,
        "closed_at": None,
        "verified_by": None,
        "round": 0,
        "rework": 0,
    }
    events = [(issue_id, 1, reported, reporter, zone.names[reporter], "report", None, status)]
    deadline = next((reported + timedelta(hours=h) for a, h in plan if a == "deadline"), None)
    updated = reported
    for action, after in plan:
        if action == "deadline":
            continue
        at = reported + timedelta(hours=after)
        if at > now:
            break
        actor = supervisor
        if action == "accept":
            f["accepted_at"] = at
        elif action == "dispatch":
            f["org"] = rng.choices([office, community, grid], weights=[7, 2, 1])[0]
            f["dispatched_at"], f["deadline_at"] = at, deadline
            f["round"] = 1
        elif action == "submit_rectification":
            actor = worker
            f["rectified_at"], f["rectified_by"] = at, worker
        elif action == "verify_fail":
            f["rework"] = int(str(f["rework"])) + 1
            f["dispatched_at"], f["rectified_at"], f["verified_by"] = at, None, supervisor
            f["round"] = 2
        elif action == "verify_pass":
            f["closed_at"], f["verified_by"] = at, supervisor
        events.append(
            (
                issue_id,
                len(events) + 1,
                at,
                actor,
                zone.names[actor],
                action,
                status,
                NEXT_STATUS[action],
            )
        )
        status, updated = NEXT_STATUS[action], at
    row = (
        issue_id,
        f"BN-{reported:%Y%m%d}-{issue_id:06d}",
        category,
        "synthetic issue",
        status,
        LAT + rng.uniform(-0.05, 0.05),
        LON + rng.uniform(-0.05, 0.05),
        8.0,
        "device",
        None,
        f["org"],
        reporter,
        reported,
        f["accepted_at"],
        f["dispatched_at"],
        f["deadline_at"],
        f["rectified_at"],
        f["rectified_by"],
        f["closed_at"],
        f["verified_by"],
        f["round"],
        f["rework"],
        round(rng.uniform(1, 50), 1) if rng.random() < 0.6 else None,
        None,
        len(events),
        updated,
        issue_id,  # change_seq: issues come in report order, one change each
    )
    event_rows = [(*event, None, "{}", hex_digest(rng), hex_digest(rng)) for event in events]
    kinds = ["before", "after" if f["rectified_at"] or f["closed_at"] else "before"]
    kinds.append("verification" if f["closed_at"] else "before")
    photo_rows = [photo_row(rng, issue_id, kind, reported, reporter) for kind in kinds]
    return row, event_rows, photo_rows


def hex_digest(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def photo_row(
    rng: random.Random, issue_id: int, kind: str, at: datetime, user: int
) -> tuple[object, ...]:
    phash = f"{rng.getrandbits(64):016x}"
    bands = phash_bands(phash)
    return (
        issue_id,
        kind,
        hex_digest(rng),
        "image/jpeg",
        3_500_000,
        4000,
        3000,
        at.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
        at,
        user,
        "{}",
        LAT,
        LON,
        8.0,
        "exif",
        "[]",
        phash,
        *bands,
        None,
        1 if kind != "before" else 0,
    )


# --- Database and server ---------------------------------------------------------------------


@contextmanager
def bulk_load(conn: psycopg.Connection) -> Iterator[None]:
    """Drop the secondary indexes of the loaded tables, skip FK checks; rebuild and commit."""
    tables = ["org_units", "users", "issues", "issue_events", "photos"]
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        (tables,),
    ).fetchall()
    for name, _definition in indexes:
        conn.execute(f'DROP INDEX "{name}"')  # type: ignore[arg-type]
    conn.execute("SET session_replication_role = replica")
    yield
    conn.execute("SET session_replication_role = DEFAULT")
    for _name, definition in indexes:
        conn.execute(definition)
    conn.commit()


def admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def database_url(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


@contextmanager
def fresh_database(size: int, engine: str = "postgresql") -> Iterator[str]:
    """A new, empty database's URL: PostgreSQL, or an SQLite file in a temporary folder."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"gp_bench_dashboard_{os.getpid()}_{size}"
    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin(f"CREATE DATABASE {name}")
    try:
        yield database_url(name)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(url: str, upload_dir: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "GRIDPROOF_DATABASE_URL": url, "GRIDPROOF_UPLOAD_DIR": upload_dir}
    # No checkpoint thread: at its start it signs every unsigned chain head, and the loaded
    # rows were never signed, so it spent the whole run signing 100,000 (or 1,000,000) heads
    # beside the timed requests (a 1 ms floor became 6 ms). A running server signs only the
    # few heads that changed since its last round (app/services/checkpoints.py).
    env["GRIDPROOF_CHECKPOINT_THREAD"] = "false"
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def token_for(url: str, username: str = "bench") -> str:
    env = {**os.environ, "GRIDPROOF_DATABASE_URL": url}
    command = [sys.executable, "-m", "app", "user", "add", username, "--role", "supervisor"]
    output = subprocess.run(
        [*command, "--org", "D"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    return output.strip().splitlines()[-1]


# --- Measuring -------------------------------------------------------------------------------


@dataclass
class Figures:
    size: int
    timings: dict[str, list[float]]
    notes: dict[str, str]
    load_s: float

    def median(self, name: str) -> float | None:
        values = self.timings.get(name)
        return statistics.median(values) if values else None

    def p95(self, name: str) -> float | None:
        values = sorted(self.timings.get(name) or [])
        return values[min(len(values) - 1, int(0.95 * len(values)))] if values else None


FLOOR, STATS, LIST, COMPACT, REVALIDATE, RANKINGS = (
    "floor", "stats", "list", "compact", "304", "rankings",
)  # fmt: skip
LABELS = {
    FLOOR: "GET /healthz (floor)",
    STATS: "GET /api/v1/stats",
    LIST: "GET /api/v1/issues?limit=50",
    COMPACT: "GET /api/v1/issues?limit=50&view=compact",
    REVALIDATE: "GET /api/v1/stats + If-None-Match",
    RANKINGS: "GET /api/v1/rankings (no target)",
}


def measure(
    base: str, token: str, rounds: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    notes: dict[str, str] = {}
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        first = client.get("/api/v1/stats", headers=auth)
        first.raise_for_status()
        notes["stats_body"] = json.dumps(
            {k: first.json()[k] for k in ("open", "overdue", "volume", "score", "grade")}
        )
        etag = first.headers.get("etag")
        requests: dict[str, tuple[str, dict[str, str], int]] = {
            FLOOR: ("/healthz", {}, 200),
            STATS: ("/api/v1/stats", auth, 200),
            LIST: ("/api/v1/issues?limit=50", auth, 200),
            COMPACT: ("/api/v1/issues?limit=50&view=compact", auth, 200),
            RANKINGS: ("/api/v1/rankings", auth, 200),
        }
        if etag:
            probe = client.get("/api/v1/stats", headers={**auth, "If-None-Match": etag})
            if probe.status_code == 304:
                requests[REVALIDATE] = ("/api/v1/stats", {**auth, "If-None-Match": etag}, 304)
            else:
                notes[REVALIDATE] = f"ETag given but If-None-Match answered {probe.status_code}"
        else:
            notes[REVALIDATE] = "no ETag support yet"
        timings: dict[str, list[float]] = {name: [] for name in requests}
        for round_ in range(warmup + rounds):
            for name, (path, headers, expected) in requests.items():
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if name == REVALIDATE and response.status_code == 200:
                    # The ETag also rolls over with the clock (GRIDPROOF_ETAG_CLOCK_SECONDS):
                    # take the new one, and leave this full answer out of the 304 timings.
                    headers["If-None-Match"] = response.headers["ETag"]
                    continue
                if response.status_code != expected:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
                if round_ >= warmup:
                    timings[name].append(elapsed)
    return timings, notes


COUNTS = (
    "SELECT (SELECT count(*) FROM issues), (SELECT count(*) FROM issue_events), "
    "(SELECT count(*) FROM photos)"
)


def load_postgres(url: str, size: int, now: datetime) -> tuple[int, ...]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn, bulk_load(conn):
        zone = load_zone(PostgresLoader(conn))
        load_issues(PostgresLoader(conn), zone, size, now)
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        counts = conn.execute(COUNTS).fetchone()
    assert counts is not None
    return tuple(counts)


def load_sqlite(url: str, size: int, now: datetime) -> tuple[int, ...]:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        zone = load_zone(SqliteLoader(conn))
        load_issues(SqliteLoader(conn), zone, size, now)
        conn.commit()
        conn.execute("ANALYZE")
        return tuple(conn.execute(COUNTS).fetchone())
    finally:
        conn.close()


def run_size(size: int, rounds: int, warmup: int, engine: str) -> Figures:
    print(f"\n== {size:,} issues on {engine} ==", flush=True)
    with fresh_database(size, engine) as url, tempfile.TemporaryDirectory() as uploads:
        started = time.perf_counter()
        migrate(url)
        now = datetime.now(UTC)
        load = load_sqlite if engine == "sqlite" else load_postgres
        counts = load(url, size, now)
        load_s = time.perf_counter() - started
        assert counts is not None
        print(
            f"loaded {counts[0]:,} issues, {counts[1]:,} events, {counts[2]:,} photo rows "
            f"in {load_s:.1f} s",
            flush=True,
        )
        token = token_for(url)
        with server(url, uploads) as base:
            timings, notes = measure(base, token, rounds, warmup)
        print(f"/stats of this week (district supervisor): {notes.pop('stats_body')}")
        return Figures(size, timings, notes, load_s)


def report(results: list[Figures], rounds: int) -> None:
    print(f"\nClient-side latency, {rounds} sequential requests of each kind, keep-alive (ms):")
    print(f"{'issues':>8}  {'request':<44} {'median':>8} {'p95':>8} {'× floor':>8}")
    for figures in results:
        floor = figures.median(FLOOR)
        for name, label in LABELS.items():
            median, p95 = figures.median(name), figures.p95(name)
            if median is None or p95 is None or floor is None:
                note = figures.notes.get(name, "not measured")
                print(f"{figures.size:>8,}  {label:<44} {note}")
                continue
            ratio = median / floor
            print(f"{figures.size:>8,}  {label:<44} {median:>8.2f} {p95:>8.2f} {ratio:>7.1f}×")
    print("\nTargets (medians):")
    by_size = {f.size: f for f in results}
    big, small = by_size.get(100_000), by_size.get(10_000)
    if big is None:
        big = max(results, key=lambda f: f.size)
    floor = big.median(FLOOR) or float("nan")
    revalidate = big.median(REVALIDATE)
    if revalidate is None:
        print(f"  304 within {TARGET_304:g}× floor: {big.notes.get(REVALIDATE, 'not measured')}")
    else:
        verdict(f"304 within {TARGET_304:g}× floor", revalidate / floor, TARGET_304)
    for name in (STATS, LIST, COMPACT):
        value = big.median(name)
        if value is not None:
            verdict(
                f"{LABELS[name]} within {TARGET_HEAVY:g}× floor at {big.size:,}",
                value / floor,
                TARGET_HEAVY,
            )
    if small is not None and small is not big:
        for name in (STATS, LIST, COMPACT):
            a, b = big.median(name), small.median(name)
            if a is not None and b is not None:
                verdict(f"{LABELS[name]} at {big.size:,} vs {small.size:,}", a / b, TARGET_GROWTH)


def verdict(label: str, ratio: float, target: float) -> None:
    mark = "met" if ratio <= target else "MISSED"
    print(f"  {label:<62} {ratio:6.2f}× (target ≤ {target:g}×): {mark}")


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--sizes", default="100000,10000")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    started = time.perf_counter()
    print(f"{os.cpu_count()} CPUs, load average {load_average()} (other work shares this machine)")
    results = [run_size(size, args.rounds, args.warmup, args.database) for size in sizes]
    report(results, args.rounds)
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average now {load_average()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
