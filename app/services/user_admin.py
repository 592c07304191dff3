"""Admins manage who may sign in: disable and enable a user, revoke all of their tokens.

A disabled user cannot sign in, and every token of theirs is revoked at once (a token of a
disabled user is refused anyway: services/tokens.py). Enabling lets them sign in again; their
old tokens stay revoked. Admins act on the users of their unit and below it (others: 404).
"""

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.errors import NotFound, ValidationFailed
from app.models import ApiToken, OrgUnit, User
from app.models.base import utcnow
from app.models.user import UserAccount
from app.services import changes, orgs
from app.services.permissions import user_org


def managed_user(session: Session, admin: User, username: str) -> User:
    """The user of this name, if the admin manages them (404 otherwise)."""
    user = session.exec(select(User).where(User.username == username)).first()
    unit = session.get(OrgUnit, user.org_unit_id) if user else None
    if user is None or unit is None or not orgs.is_within(unit, user_org(session, admin)):
        raise NotFound(f"no user {username!r} in your unit")
    return user


def revoke_tokens(session: Session, user: User) -> UserAccount:
    """Revoke every live token of the user at once; they stay able to sign in again."""
    revoked = _revoke_all(session, user)
    session.commit()
    return account(session, user, revoked)


def disable(session: Session, user: User, *, by: User | None = None) -> UserAccount:
    """The user may no longer sign in, and every token of theirs is revoked."""
    if by is not None and by.id == user.id:
        raise ValidationFailed("an admin cannot disable themselves")
    user.disabled_at = user.disabled_at or utcnow()
    session.add(user)
    revoked = _revoke_all(session, user)
    changes.bump(session)
    session.commit()
    return account(session, user, revoked)


def enable(session: Session, user: User) -> UserAccount:
    """The user may sign in again (their old tokens stay revoked)."""
    user.disabled_at = None
    session.add(user)
    changes.bump(session)
    session.commit()
    return account(session, user, 0)


def disable_by_name(session: Session, username: str) -> UserAccount:
    """`gridproof user disable NAME`: any user, by the operator."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise ValidationFailed(f"no user {username!r}")
    return disable(session, user)


def account(session: Session, user: User, revoked: int) -> UserAccount:
    org = session.get(OrgUnit, user.org_unit_id)
    assert org is not None
    return UserAccount(
        username=user.username,
        role=user.role,
        org_unit=org.code,
        disabled_at=user.disabled_at,
        tokens_revoked=revoked,
    )


def _revoke_all(session: Session, user: User) -> int:
    revoked = session.connection().execute(
        update(ApiToken)
        .where(col(ApiToken.user_id) == user.id, col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return int(revoked.rowcount or 0)
