"""Shared fixtures: every test gets an empty, migrated database, on SQLite and on PostgreSQL.

SQLite: a migrated template file is made once per test process and copied for each test.
PostgreSQL: one migrated database per test process, emptied (TRUNCATE, categories kept) before
each test — creating and dropping a database per test waits for checkpoints and is slow.
Tests that change the schema itself take `fresh_database_url`, a brand-new empty database.
Set GRIDPROOF_REQUIRE_POSTGRES=1 (as .ci/run does) to make a missing PostgreSQL an error.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlmodel import Session, SQLModel

from app.config import Settings
from app.db import get_engine, migrate
from app.main import create_app
from app.services import auth
from tests import factories

PG_ADMIN_DSN = os.environ.get("GRIDPROOF_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("GRIDPROOF_REQUIRE_POSTGRES") == "1"
RUN_ID = uuid.uuid4().hex[:8]
# The S3-protocol server's fixtures (s3_server, s3_bucket, s3_credentials): tests/s3_server.py.
pytest_plugins = ["tests.s3_server"]


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_ADMIN_DSN} does not answer: {exc}".strip()


_PG_PROBLEM = _pg_available()


def _pg_url(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}"


def _pg_exec(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    get_engine(f"sqlite:///{path}").dispose()
    return path


def _require_pg() -> None:
    if _PG_PROBLEM:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here: {_PG_PROBLEM}")
        pytest.skip(_PG_PROBLEM)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This test process's migrated PostgreSQL database."""
    _require_pg()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"gp_{RUN_ID}_{worker}"
    _pg_exec(f"DROP DATABASE IF EXISTS {name}")
    _pg_exec(f"CREATE DATABASE {name}")
    url = _pg_url(name)
    migrate(url)
    yield url
    get_engine(url).dispose()
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# Seeded by migrations: kept between tests (the change counter only ever grows).
_KEEP = {"categories", "alembic_version", "change_counter"}


def _empty_pg(url: str) -> None:
    tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables if t.name not in _KEEP)
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database for this test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
        yield url
        get_engine(url).dispose()
        return
    url = request.getfixturevalue("pg_database")
    _empty_pg(url)
    yield url
    get_engine(url).dispose()  # no connection of this test stays open into the next


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new database with no tables at all, for tests of the migrations themselves."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        yield url
        get_engine(url).dispose()
        return
    _require_pg()
    name = f"gp_{RUN_ID}_{uuid.uuid4().hex[:10]}"
    _pg_exec(f"CREATE DATABASE {name}")
    url = _pg_url(name)
    yield url
    get_engine(url).dispose()
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its production cost (64 MiB, 3 passes) for every test user dominated setup;
    tests of passwords still see real argon2 hashes, only cheaper ones."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, upload_dir=tmp_path / "uploads")


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def small_client(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    """The app with max_upload_mb=1 on the same database, and its own upload folder."""
    small = Settings(
        database_url=settings.database_url, upload_dir=tmp_path / "small-uploads", max_upload_mb=1
    )
    with TestClient(create_app(small)) as client:
        yield client, small


@pytest.fixture
def zone(session: Session) -> factories.Zone:
    """A small zone with users of every role (see factories.make_zone)."""
    return factories.make_zone(session)
