"""Users, passwords (argon2) and bearer tokens (random, stored as SHA-256)."""

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Unauthenticated, ValidationFailed
from app.models import ApiToken, OrgUnit, Role, User
from app.models.base import utcnow
from app.models.change import COUNTER_ID, ChangeCounter
from app.models.user import token_digest
from app.services import login_throttle, orgs, tokens

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password")


def issue_token(session: Session, user: User) -> str:
    """A new random token for the user; only its hash is stored. The caller commits."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        ApiToken(
            user_id=user.id, token_sha256=token_digest(token), created_at=now, last_used_at=now
        )
    )
    return token


# One query per authenticated request: the user, their org unit (for the scope checks, which
# then find it in the session) and the last change number (for the answer's ETag); a token
# revoked, idle too long, too old, or of a disabled user finds nothing.
_CALLER = (
    select(User, OrgUnit, col(ChangeCounter.value), ApiToken)
    .join(ApiToken, col(ApiToken.user_id) == col(User.id))
    .join(OrgUnit, col(OrgUnit.id) == col(User.org_unit_id))
    .join(ChangeCounter, col(ChangeCounter.id) == COUNTER_ID)
    .where(*tokens.LIVE_TOKEN)
)
# last_used_at is written at most this often per token (a write per request would serialise
# SQLite and cost PostgreSQL a WAL record per GET).
TOUCH_EVERY = timedelta(hours=1)
# Writes the notes of GETs, one at a time, off the request.
_toucher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-touch")
logger = logging.getLogger("gridproof")


@dataclass(frozen=True)
class Caller:
    """Who a token belongs to: the user, their org unit, the token's id, and the number of the
    last change committed before the lookup (for the answer's ETag)."""

    user: User
    org: OrgUnit
    token_id: int
    change: int


def user_for_token(
    session: Session,
    token: str,
    settings: Settings | None = None,
    *,
    writer: Engine | None = None,
) -> Caller:
    """The token's caller, in one query.

    With `settings`, the token expires (token_idle_days, token_max_days) and its use is noted:
    with `writer`, on a connection of its own off the request; else in `session`. Without, it
    never expires (Open311 api keys, revoked only by hand or by disabling their user)."""
    now = utcnow()
    row = session.exec(_CALLER, params=tokens.live_token_params(token, settings, now)).first()
    if row is None:
        raise Unauthenticated("The token is unknown, expired or revoked; sign in again")
    user, org, change, api_token = row
    assert api_token.id is not None
    last_used_at = api_token.last_used_at
    if settings and (last_used_at is None or last_used_at < now - TOUCH_EVERY):
        _touch(session, writer, api_token.id, now)
    # Held here so that the session's identity map keeps it (it holds rows weakly): the scope
    # checks (permissions.user_org) then find it without a query.
    session.info["caller_org_unit"] = org
    return Caller(user, org, api_token.id, change)


def _touch(session: Session, writer: Engine | None, token_id: int, now: datetime) -> None:
    """Note the token's use: in `session` without a writer, else on a connection of its own in
    the background (a request never waits for SQLite's write lock for it; a note lost to a
    crash only shortens the idle time left)."""
    statement = update(ApiToken).where(col(ApiToken.id) == token_id).values(last_used_at=now)
    if writer is None:
        session.execute(statement)
        return
    _toucher.submit(_touch_apart, writer, statement)


def _touch_apart(writer: Engine, statement: Any) -> None:
    try:
        with writer.begin() as connection:
            connection.execute(statement)
    except DBAPIError:
        logger.warning("could not note a token's use", exc_info=True)


def wait_for_touches() -> None:
    """Until the notes of token use submitted so far are written (for tests and shutdown)."""
    _toucher.submit(lambda: None).result()


def login(
    session: Session, settings: Settings, username: str, password: str, *, client: str
) -> tuple[str, User]:
    """A new token for the right password; throttled per username and per client address."""
    now = utcnow()
    throttle_keys = login_throttle.keys(username, client)
    login_throttle.check(session, throttle_keys, now)
    user = session.exec(select(User).where(User.username == username)).first()
    stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
    with login_throttle.hashing_slot(settings):
        verified = _verifies(stored, password)
    if not verified or user is None or user.password_hash is None or user.disabled_at:
        login_throttle.record_failure(session, settings, throttle_keys, now)
        session.commit()
        raise Unauthenticated("Wrong username or password")
    login_throttle.record_success(session, throttle_keys)
    token = issue_token(session, user)
    session.commit()
    return token, user


def _verifies(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def revoke_token(session: Session, token: str) -> None:
    row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == token_digest(token))).one()
    row.revoked_at = utcnow()
    session.add(row)
    session.commit()


def create_user(
    session: Session, username: str, role: str, org_code: str, password: str | None = None
) -> tuple[User, str]:
    """Create a user and return it with a fresh API token."""
    if role not in set(Role):
        raise ValidationFailed(f"unknown role {role!r}; one of {', '.join(Role)}")
    org = orgs.by_code(session, org_code)
    if session.exec(select(User).where(User.username == username)).first():
        raise ValidationFailed(f"user {username!r} exists already")
    assert org.id is not None
    user = User(
        username=username,
        role=role,
        org_unit_id=org.id,
        password_hash=_hasher.hash(password) if password else None,
    )
    session.add(user)
    session.flush()
    token = issue_token(session, user)
    session.commit()
    return user, token
