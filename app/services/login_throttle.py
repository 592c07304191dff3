"""Sign-in throttling: failed attempts per username and per client address, with exponential
backoff, counted in the database (every replica sees the same counts), and a cap on the
password hashes one server process computes at once.

A key ("user:NAME", "ip:ADDR") that failed `limit` times within the window waits the base
delay, doubled with each further failure, at most the maximum. While it waits, a sign-in is
answered 429 before any password is hashed (a blocked request costs one indexed read), and such
a refusal does not count as a failure: only a wrong password checked does. A success clears the
username's count, never the address's (signing into one's own account must not reset a
password-guessing address). The per-address limit is high, as an office's phones share a NAT.
"""

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import TooManyRequests
from app.models import LoginThrottle
from app.models.base import UTCDateTime

# How long a sign-in waits for one of the process's hashing slots before it is told to retry.
HASH_WAIT_S = 2.0
_semaphores: dict[int, threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()


def keys(username: str, client: str) -> dict[str, str]:
    """The throttle keys of a sign-in, by kind ("user", "ip")."""
    return {"user": f"user:{username.strip().casefold()}"[:120], "ip": f"ip:{client}"[:120]}


def check(session: Session, throttle_keys: dict[str, str], now: datetime) -> None:
    """too_many_requests (with Retry-After) while any of the keys must wait."""
    query = select(LoginThrottle.blocked_until).where(
        col(LoginThrottle.key).in_(list(throttle_keys.values())),
        col(LoginThrottle.blocked_until) > now,
    )
    waits = [until for until in session.exec(query).all() if until is not None]
    if waits:
        retry_after = max(1, math.ceil((max(waits) - now).total_seconds()))
        raise TooManyRequests(
            f"too many failed sign-ins: wait {retry_after} s before trying again",
            retry_after_s=retry_after,
        )


def record_failure(
    session: Session, settings: Settings, throttle_keys: dict[str, str], now: datetime
) -> None:
    """Count a wrong password for each key; block a key that reached its limit. No commit."""
    limits = {"user": settings.login_user_failures, "ip": settings.login_ip_failures}
    window_start = now - timedelta(seconds=settings.login_window_s)
    upsert = _upsert(session.get_bind().dialect.name)
    for kind, key in throttle_keys.items():
        params = {"key": key, "now": now, "window_start": window_start}
        failures = session.execute(upsert, params).scalar_one()
        beyond = failures - limits[kind]
        if beyond >= 0:
            delay = min(settings.login_backoff_base_s * 2**beyond, settings.login_backoff_max_s)
            blocked = update(LoginThrottle).where(col(LoginThrottle.key) == key)
            session.execute(blocked.values(blocked_until=now + timedelta(seconds=delay)))
    # Keys that failed long ago and wait no more are forgotten (the table stays small).
    forgotten = delete(LoginThrottle).where(
        col(LoginThrottle.last_failure_at) < window_start,
        or_(col(LoginThrottle.blocked_until).is_(None), col(LoginThrottle.blocked_until) < now),
    )
    session.execute(forgotten)


def record_success(session: Session, throttle_keys: dict[str, str]) -> None:
    """The username signed in: its failures are forgiven (the address's are not). No commit."""
    session.execute(delete(LoginThrottle).where(col(LoginThrottle.key) == throttle_keys["user"]))


def _upsert(dialect: str) -> Any:
    """One more failure for a key (the first one again when the last is older than the
    window), atomically on every engine; returns the count."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = bindparam("now", type_=UTCDateTime())
    window_start = bindparam("window_start", type_=UTCDateTime())
    return (
        insert(LoginThrottle)
        .values(key=bindparam("key"), failures=1, last_failure_at=now, blocked_until=None)
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": case(
                    (col(LoginThrottle.last_failure_at) < window_start, 1),
                    else_=col(LoginThrottle.failures) + 1,
                ),
                "last_failure_at": now,
            },
        )
        .returning(col(LoginThrottle.failures))
    )


@contextmanager
def hashing_slot(settings: Settings) -> Iterator[None]:
    """One of the process's `login_max_concurrent_hashes` slots (a process-wide semaphore:
    each hash takes 64 MiB and a core for ~0.1 s), or too_many_requests when none frees up."""
    size = settings.login_max_concurrent_hashes
    with _semaphores_lock:
        semaphore = _semaphores.setdefault(size, threading.BoundedSemaphore(size))
    if not semaphore.acquire(timeout=HASH_WAIT_S):
        raise TooManyRequests("the server is busy checking other sign-ins", retry_after_s=1)
    try:
        yield
    finally:
        semaphore.release()
