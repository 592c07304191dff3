"""The change counter: one row numbering every write, in commit order.

Every write takes the next number inside its own transaction with

    UPDATE change_counter SET value = value + 1, changed_at = … RETURNING value, changed_at

On PostgreSQL that UPDATE locks the row until the transaction ends, so a second writer waits
there until the first has committed (or rolled back) and then reads the committed value: the
numbers are handed out in commit order and a number becomes visible only after every smaller
one. A reader that has seen change n has therefore seen (or will never see) every change below
n, which is what lets the change feed resume from a number without missing a write that
committed late. On SQLite, BEGIN IMMEDIATE (app/db.py) serialises writers outright.

The same row serves the conditional GETs (app/services/etags.py): its value changes with every
write, so one read of it tells whether anything a client saw may have changed.

`changed_at` is the latest time stamped on any change: a write stamps max(its clock, changed_at),
so updated_at never decreases along the feed, even for writers whose clocks (or whose moment
of reading the clock, before waiting for the lock) disagree.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, case, or_, update
from sqlmodel import Session, col, select

from app.models import Issue
from app.models.base import UTCDateTime, utcnow
from app.models.change import COUNTER_ID, ChangeCounter

_CHANGED_AT = col(ChangeCounter.changed_at)
_STAMP = bindparam("stamp", type_=UTCDateTime())
# Built once: every write takes a number.
_NEXT_CHANGE = (
    update(ChangeCounter)
    .where(col(ChangeCounter.id) == COUNTER_ID)
    .values(
        value=col(ChangeCounter.value) + 1,
        changed_at=case(
            (or_(_CHANGED_AT.is_(None), _CHANGED_AT < _STAMP), _STAMP), else_=_CHANGED_AT
        ),
    )
    .returning(col(ChangeCounter.value), _CHANGED_AT)
)


def next_change(session: Session, now: datetime) -> tuple[int, datetime]:
    """Take the next change number and its time; the row stays locked until the caller commits."""
    value, at = session.execute(_NEXT_CHANGE, {"stamp": now}).one()
    return value, at or now


def touch(session: Session, issue: Issue, now: datetime) -> None:
    """A new version of the issue, numbered by the change counter."""
    issue.version += 1
    issue.change_seq, issue.updated_at = next_change(session, max(now, issue.updated_at))


def bump(session: Session) -> int:
    """Count a write that changes no issue (an org unit, say), so cached answers are refreshed."""
    return next_change(session, utcnow())[0]


def current(session: Session) -> int:
    """The number of the last committed change."""
    query = select(ChangeCounter.value).where(col(ChangeCounter.id) == COUNTER_ID)
    return int(session.exec(query).one())


@dataclass(frozen=True)
class Revalidation:
    """What a cached answer depends on: who asks (and so their scope) and the last change."""

    user_id: int
    role: str
    org_unit_id: int
    change: int
