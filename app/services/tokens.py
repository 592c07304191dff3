"""Which tokens still work: not revoked, not idle too long, not too old, of a user not disabled.

Read by the caller's one lookup per request (services/auth.py, made by app/gate.py), which
the route and the If-None-Match revalidation (app/etags.py) then share.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func
from sqlmodel import col

from app.config import Settings
from app.models import ApiToken, User
from app.models.base import UTCDateTime
from app.models.user import token_digest

# Without settings (Open311 api keys) a token never expires: bounds before any token.
_EVER = datetime(1970, 1, 1, tzinfo=UTC)

LIVE_TOKEN: tuple[ColumnElement[bool], ...] = (
    col(ApiToken.token_sha256) == bindparam("digest"),
    col(ApiToken.revoked_at).is_(None),
    col(ApiToken.created_at) > bindparam("issued_after", type_=UTCDateTime()),
    func.coalesce(col(ApiToken.last_used_at), col(ApiToken.created_at))
    > bindparam("used_after", type_=UTCDateTime()),
    col(User.disabled_at).is_(None),
)


def live_token_params(token: str, settings: Settings | None, now: datetime) -> dict[str, Any]:
    """The parameters of LIVE_TOKEN: this token, not expired (never, without settings)."""
    return {
        "digest": token_digest(token),
        "issued_after": now - timedelta(days=settings.token_max_days) if settings else _EVER,
        "used_after": now - timedelta(days=settings.token_idle_days) if settings else _EVER,
    }
