"""Named secrets shared by every replica through the database (table app_secrets).

A secret is written once, by whichever process needs it first, and never changed: processes
that start at once each propose a value with INSERT … ON CONFLICT DO NOTHING and all read back
the one row that won (on PostgreSQL the losers' inserts wait on the primary key until the
winner commits; on SQLite BEGIN IMMEDIATE serialises them).
"""

from collections.abc import Callable

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from app.models import AppSecret
from app.models.base import utcnow


def shared_secret(session: Session, name: str, propose: Callable[[], str]) -> str:
    """The stored secret of this name; if there is none yet, `propose()` is stored first."""
    stored = _stored(session, name)
    if stored is not None:
        return stored
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(AppSecret)
        .values(name=name, value=propose(), created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    session.connection().execute(statement)
    session.commit()
    stored = _stored(session, name)
    assert stored is not None  # written above, or by the process that won
    return stored


def _stored(session: Session, name: str) -> str | None:
    return session.exec(select(AppSecret.value).where(col(AppSecret.name) == name)).first()
