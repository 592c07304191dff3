"""The signed-in user, sign-out, and the vocabularies every client needs."""

from fastapi import Response
from sqlmodel import col, select

from app.deps import CurrentUser, SessionDep, TokenDep
from app.models.category import Category, CategoryPublic
from app.models.org import OrgUnitPublic
from app.models.user import UserPublic
from app.routers.api import authenticated_router
from app.services import auth, orgs
from app.services.present import user_public

router = authenticated_router(prefix="/api/v1")


@router.get("/auth/me", tags=["auth"])
def me(user: CurrentUser, session: SessionDep) -> UserPublic:
    """Who the token belongs to."""
    return user_public(session, user)


@router.post("/auth/logout", tags=["auth"], status_code=204)
def logout(_user: CurrentUser, token: TokenDep, session: SessionDep) -> Response:
    """Revoke the token used for this call."""
    auth.revoke_token(session, token)
    return Response(status_code=204)


@router.get("/categories", tags=["vocabulary"])
def categories(_user: CurrentUser, session: SessionDep) -> list[CategoryPublic]:
    """The problem categories, with their default deadline and quantity unit."""
    rows = session.exec(select(Category).order_by(col(Category.code)))
    return [CategoryPublic.model_validate(c, from_attributes=True) for c in rows]


@router.get("/org-units", tags=["vocabulary"])
def org_units(_user: CurrentUser, session: SessionDep) -> list[OrgUnitPublic]:
    """The district, offices, communities and grid cells."""
    return orgs.list_public(session)
