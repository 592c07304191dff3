"""Engine, sessions and migrations."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic_core import from_json
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Execution option for connections that only read: on SQLite they begin a plain (deferred)
# transaction instead of BEGIN IMMEDIATE, so they never wait for a writer.
READ_ONLY = "gridproof_read_only"
# Execution option: on PostgreSQL, run the statement unprepared, so that it is planned with its
# parameters every time. psycopg prepares a statement after 5 runs, and PostgreSQL may then
# settle on a generic plan: for the stats query on a 10,000-issue table that plan took 10 ms
# instead of 6 (a bigger table kept the custom plan).
PLAN_EACH_TIME = "gridproof_plan_each_time"
# JSON columns (photo EXIF and flags) decoded by pydantic-core's parser: a list page decodes
# about 300 of them, and the standard library's json.loads took a tenth of the page's time.
_JSON = {"json_deserializer": from_json}
# PostgreSQL sessions in UTC, whatever the server's default: psycopg then returns timestamps
# with datetime.UTC itself (with a named zone such as Etc/UTC, each of the ~600 timestamps of a
# list page was converted again, models/base.py UTCDateTime), and no SQL depends on the server.
_PG_UTC = "-c TimeZone=UTC"


def _pg_options(database_url: str, *ours: str) -> dict[str, str]:
    """libpq's `options` for an engine: ours, then the operator's (`?options=` in the URL, else
    PGOPTIONS), which an explicit `options` would otherwise drop; theirs win where both set."""
    given = make_url(database_url).query.get("options") or os.environ.get("PGOPTIONS", "")
    theirs = " ".join(given) if isinstance(given, tuple) else given
    return {"options": " ".join(filter(None, [_PG_UTC, *ours, theirs]))}


@lru_cache
def get_engine(database_url: str) -> Engine:
    """One engine per database URL; SQLite gets WAL and write-serialising transactions."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        engine = create_engine(
            database_url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            connect_args=_pg_options(database_url),
            **_JSON,
        )
        _let_statements_plan_each_time(engine)
        return engine
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        database_url, connect_args={"check_same_thread": False, "timeout": 30}, **_JSON
    )
    _make_sqlite_transactions_immediate(engine)
    return engine


@lru_cache
def get_read_engine(database_url: str) -> Engine:
    """The engine of requests that only read: every GET and HEAD, and the poll revalidation.

    On PostgreSQL: autocommit (no BEGIN and ROLLBACK round trips; under READ COMMITTED each
    statement saw its own snapshot anyway), read-only transactions, and no pre-ping (a round
    trip per request): a GET that meets a connection dropped by a database restart answers 503
    `database_unavailable` with Retry-After (app/errors.py), the pool is emptied, and the retry
    connects afresh. On SQLite: the main engine in a deferred transaction (see READ_ONLY), so
    that readers never wait for the write lock.
    """
    if make_url(database_url).get_backend_name() == "sqlite":
        return get_engine(database_url).execution_options(**{READ_ONLY: True})
    engine = create_engine(
        database_url,
        pool_size=10,
        max_overflow=20,
        isolation_level="AUTOCOMMIT",
        # Reads only: a write slipped into a GET fails loudly instead of committing alone.
        connect_args=_pg_options(database_url, "-c default_transaction_read_only=on"),
        **_JSON,
    )
    _let_statements_plan_each_time(engine)
    return engine


def _let_statements_plan_each_time(engine: Engine) -> None:
    @event.listens_for(engine, "do_execute")
    def _unprepared(cursor: Any, statement: str, parameters: Any, context: Any) -> bool | None:
        if context.execution_options.get(PLAN_EACH_TIME):
            cursor.execute(statement, parameters, prepare=False)
            return True
        return None


def _make_sqlite_transactions_immediate(engine: Engine) -> None:
    # SQLAlchemy's documented recipe: let SQLAlchemy emit BEGIN itself, as BEGIN IMMEDIATE,
    # so that two writers queue on the lock instead of failing with SQLITE_BUSY mid-transaction.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A connection marked read-only (GET and HEAD, the conditional-GET check) needs no
        # write lock.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str) -> None:
    """Apply every pending migration."""
    command.upgrade(alembic_config(database_url), "head")


def schema_behind(database_url: str) -> str | None:
    """Why the database's schema is not the code's (None when it is at the head revision)."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    with get_engine(database_url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return None
    return (
        f"the database is at revision {current or 'none (empty)'}, this code needs {head}: "
        "run `gridproof migrate` first"
    )


def ping(database_url: str) -> None:
    with get_engine(database_url).connect() as connection:
        connection.execute(text("SELECT 1"))
