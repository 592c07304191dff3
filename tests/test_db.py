"""The PostgreSQL sessions the engines open: in UTC, the reader read-only, and the operator's
own `options` kept beside ours."""

from datetime import UTC
from urllib.parse import quote

from sqlalchemy import text

from app.db import get_engine, get_read_engine


def _settings(engine, *names: str) -> list[str]:
    with engine.connect() as connection:
        return [connection.execute(text(f"SHOW {name}")).scalar_one() for name in names]


def test_sessions_run_in_utc_and_keep_the_operators_options(pg_database):
    url = f"{pg_database}?options={quote('-c statement_timeout=4321')}"
    writer, reader = get_engine(url), get_read_engine(url)
    try:
        names = ("TimeZone", "statement_timeout", "default_transaction_read_only")
        assert _settings(writer, *names) == ["UTC", "4321ms", "off"]
        assert _settings(reader, *names) == ["UTC", "4321ms", "on"]
        with reader.connect() as connection:
            now = connection.execute(text("SELECT now()")).scalar_one()
        assert now.tzinfo is UTC  # what models/base.py UTCDateTime passes through as it is
    finally:
        writer.dispose()
        reader.dispose()


def test_pgoptions_is_kept_when_the_url_has_none(pg_database, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=1234")
    url = f"{pg_database}?application_name=gridproof-test"  # a URL no other test caches
    writer = get_engine(url)
    try:
        assert _settings(writer, "TimeZone", "statement_timeout") == ["UTC", "1234ms"]
    finally:
        writer.dispose()
