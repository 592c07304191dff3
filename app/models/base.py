"""Column types and helpers shared by every table."""

from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

from pydantic import AfterValidator
from sqlalchemy import JSON, DateTime
from sqlalchemy.types import TypeDecorator
from sqlmodel import Column, Field

# Ids are 32-bit integer columns; a larger number in a URL or a cursor names nothing.
MAX_ID = 2**31 - 1


def _without_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


# Text from a request: PostgreSQL cannot store NUL, so no engine accepts it.
Text = Annotated[str, AfterValidator(_without_nul)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_aware(moment: datetime, zone: tzinfo) -> datetime:
    """A time sent without an offset is the zone's local wall time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every engine (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp must carry its offset")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # PostgreSQL's, in a UTC session (db.py)
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_field(*, nullable: bool = True, index: bool = False, **kwargs: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index), **kwargs)


def json_field(*, default_factory: Any = None, nullable: bool = True) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=nullable))
