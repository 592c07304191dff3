"""Users, passwords (argon2) and bearer tokens (random, stored as SHA-256)."""

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Unauthenticated, ValidationFailed
from app.models import ApiToken, OrgUnit, Role, User
from app.models.base import utcnow
from app.models.change import COUNTER_ID, ChangeCounter
from app.models.user import token_digest
from app.services import login_throttle, orgs

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password")


def issue_token(session: Session, user: User) -> str:
    """A new random token for the user; only its hash is stored. The caller commits."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_sha256=token_digest(token)))
    return token


# One query per authenticated request: the user, their org unit (for the scope checks, which
# then find it in the session) and the last change number (for the answer's ETag).
_CALLER = (
    select(User, OrgUnit, col(ChangeCounter.value))
    .join(ApiToken, col(ApiToken.user_id) == col(User.id))
    .join(OrgUnit, col(OrgUnit.id) == col(User.org_unit_id))
    .join(ChangeCounter, col(ChangeCounter.id) == COUNTER_ID)
    .where(ApiToken.token_sha256 == bindparam("digest"), col(ApiToken.revoked_at).is_(None))
)


def user_for_token(session: Session, token: str) -> tuple[User, int]:
    """The token's user and the number of the last change committed before this read."""
    row = session.exec(_CALLER, params={"digest": token_digest(token)}).first()
    if row is None:
        raise Unauthenticated("The token is unknown or has been revoked; sign in again")
    user, org, change = row
    # Held here so that the session's identity map keeps it (it holds rows weakly): the scope
    # checks (permissions.user_org) then find it without a query.
    session.info["caller_org_unit"] = org
    return user, change


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
    if not verified or user is None or user.password_hash is None:
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
