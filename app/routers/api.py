"""The two kinds of /api/v1 router: authenticated (the default) and public.

Every API router is made by `authenticated_router`, which puts the token check on the router
itself: a route added to it needs a valid bearer token whether or not it asks for the user, and
documents 401. Only `public.router` (sign-in and health checks) is made without it.
"""

from typing import Any

from fastapi import APIRouter, Depends

from app.deps import get_current_user
from app.errors import (
    AppError,
    BadRequest,
    DatabaseUnavailable,
    HeadersTooLarge,
    IdempotencyConflict,
    ImageTooManyPixels,
    ImageUnreadable,
    NotFound,
    PayloadTooLarge,
    PhotoTooLarge,
    StorageUnavailable,
    TooManyFiles,
    TooManyRequests,
    Unauthenticated,
    UnsupportedMediaType,
    UriTooLong,
    ValidationFailed,
)
from app.openapi import problem_responses

# Every authenticated route reads the token's user, so every one may also lose the database;
# a body that is not multipart is refused past its limit before the route reads it (gate.py),
# and a head over the server's limits before the app sees it (serving.py).
AUTHENTICATED = problem_responses(
    Unauthenticated, DatabaseUnavailable, PayloadTooLarge, UriTooLong, HeadersTooLarge
)


def authenticated_router(responses: dict[int | str, Any] | None = None, **kwargs: Any) -> APIRouter:
    """An APIRouter whose every route needs `Authorization: Bearer <token>` (401 without);
    `responses` adds what every route of the router may answer besides."""
    every = {**AUTHENTICATED, **(responses or {})}
    return APIRouter(dependencies=[Depends(get_current_user)], responses=every, **kwargs)


# A route that reads or writes the object store (app/services/objects.py) may find it down:
# 503 like a lost database (listed together: a route's 503 replaces the router's).
STORE_ERRORS: tuple[type[AppError], ...] = (DatabaseUnavailable, StorageUnavailable)
# What a route that takes photos can answer besides its own rules: the multipart body, each
# photo on its way through the pipeline (app/services/photos.py), the Idempotency-Key, the
# token's upload allowance (app/services/upload_throttle.py).
UPLOAD_ERRORS: tuple[type[AppError], ...] = (
    BadRequest,
    TooManyRequests,
    IdempotencyConflict,
    PhotoTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    ImageUnreadable,
    ImageTooManyPixels,
    TooManyFiles,
    *STORE_ERRORS,
)
# A route on /issues/{issue_id} or /photos/{photo_id}: an id out of range, or none you may see.
ONE_ITEM_ERRORS: tuple[type[AppError], ...] = (NotFound, ValidationFailed)
