"""Routes that need no token: health checks and sign-in (every other router is authenticated:
app/routers/api.py)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.db import ping
from app.deps import SessionDep, SettingsDep, StorageDep, StoreDep
from app.errors import (
    BadRequest,
    DatabaseUnavailable,
    PayloadTooLarge,
    PhotoTooLarge,
    TooManyRequests,
    Unauthenticated,
    ValidationFailed,
)
from app.models.user import LoginRequest, LoginResponse
from app.openapi import Responses, problem_responses
from app.services import auth
from app.services.present import user_public

router = APIRouter()


class Readiness(BaseModel):
    ready: bool
    database: bool
    storage: bool


NOT_READY: Responses = {
    503: {
        "model": Readiness,
        "description": "Not ready: the database or the storage is unreachable",
    }
}


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], response_model=Readiness, responses=NOT_READY)
def readyz(settings: SettingsDep, storage: StorageDep, store: StoreDep) -> JSONResponse:
    """The database and the photo storage (the local temp folder, the object store) are
    reachable."""
    checks = {"database": True, "storage": storage.writable() and store.writable()}
    try:
        ping(settings.database_url)
    except Exception:  # any driver error means "not ready", which is the answer asked for
        checks["database"] = False
    ready = all(checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


@router.post(
    "/api/v1/auth/login",
    tags=["auth"],
    responses=problem_responses(
        BadRequest,
        Unauthenticated,
        PhotoTooLarge,
        PayloadTooLarge,
        ValidationFailed,
        TooManyRequests,
        DatabaseUnavailable,
    ),
)
def login(
    body: LoginRequest, session: SessionDep, settings: SettingsDep, request: Request
) -> LoginResponse:
    """Exchange a username and password for a bearer token (throttled: 429 with Retry-After)."""
    client = request.client.host if request.client else ""
    token, user = auth.login(session, settings, body.username, body.password, client=client)
    return LoginResponse(token=token, user=user_public(session, user))
