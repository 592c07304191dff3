"""Admins: disable and enable users, revoke all of a user's tokens at once."""

from typing import Annotated

from fastapi import Path

from app.deps import AdminUser, SessionDep
from app.errors import Forbidden, NotFound, ValidationFailed
from app.models.user import UserAccount
from app.openapi import problem_responses
from app.routers.api import authenticated_router
from app.services import user_admin

router = authenticated_router(
    prefix="/api/v1/users",
    tags=["users"],
    responses=problem_responses(Forbidden, NotFound, ValidationFailed),
)

Username = Annotated[str, Path(min_length=1, max_length=60)]


@router.delete("/{username}/tokens")
def revoke_tokens(username: Username, session: SessionDep, admin: AdminUser) -> UserAccount:
    """Sign the user out everywhere: every token of theirs is revoked at once."""
    user = user_admin.managed_user(session, admin, username)
    return user_admin.revoke_tokens(session, user)


@router.post("/{username}/disable")
def disable(username: Username, session: SessionDep, admin: AdminUser) -> UserAccount:
    """The user may no longer sign in, and every token of theirs is revoked."""
    user = user_admin.managed_user(session, admin, username)
    return user_admin.disable(session, user, by=admin)


@router.post("/{username}/enable")
def enable(username: Username, session: SessionDep, admin: AdminUser) -> UserAccount:
    """The user may sign in again (their old tokens stay revoked)."""
    user = user_admin.managed_user(session, admin, username)
    return user_admin.enable(session, user)
