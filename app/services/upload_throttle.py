"""Photo uploads per token: a burst of `upload_burst`, then one every
`upload_window_s / upload_burst` seconds (the generic cell rate algorithm), counted in the
login throttle's table (`login_throttles`, key "upload:<token id>"), so every replica sees it.

The row's `blocked_until` is the key's theoretical arrival time: each upload moves it one
interval later (from now, if it lies in the past), and an upload that would move it more than
the window past now is refused with 429 and the wait. `failures` counts the uploads taken and
is what a concurrent taker compares against (compare and swap), so that two replicas never
both take the last one; `last_failure_at` is the last upload taken.
"""

import math
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import TooManyRequests
from app.models import LoginThrottle

# Compare-and-swap rounds before a taker that keeps losing the race is told to retry.
_ROUNDS = 5


def key(token_id: int) -> str:
    return f"upload:{token_id}"


def take(session: Session, settings: Settings, token_id: int, now: datetime) -> None:
    """Count one upload for the token, or too_many_requests (with Retry-After); commits."""
    interval = timedelta(seconds=settings.upload_window_s / settings.upload_burst)
    window = timedelta(seconds=settings.upload_window_s)
    throttle_key = key(token_id)
    for _ in range(_ROUNDS):
        query = select(LoginThrottle.failures, LoginThrottle.blocked_until).where(
            col(LoginThrottle.key) == throttle_key
        )
        row = session.exec(query).first()
        if row is None:
            if _insert_first(session, throttle_key, now, now + interval):
                session.commit()
                return
            continue  # another request inserted it meanwhile
        taken, arrival = row
        arrival = max(arrival or now, now) + interval
        if arrival - now > window:
            session.rollback()
            wait = max(1, math.ceil((arrival - now - window).total_seconds()))
            raise TooManyRequests(
                f"too many uploads with this token: wait {wait} s", retry_after_s=wait
            )
        swap = (
            update(LoginThrottle)
            .where(col(LoginThrottle.key) == throttle_key, col(LoginThrottle.failures) == taken)
            .values(failures=taken + 1, last_failure_at=now, blocked_until=arrival)
        )
        if session.connection().execute(swap).rowcount == 1:
            session.commit()
            return
        session.rollback()
    raise TooManyRequests("too many uploads at once with this token", retry_after_s=1)


def _insert_first(session: Session, throttle_key: str, now: datetime, arrival: datetime) -> bool:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(LoginThrottle)
        .values(key=throttle_key, failures=1, last_failure_at=now, blocked_until=arrival)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(col(LoginThrottle.key))
    )
    return session.connection().execute(statement).first() is not None
