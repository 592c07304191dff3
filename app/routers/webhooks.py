"""Webhook subscriptions and their delivery logs (admins)."""

from typing import Annotated

from fastapi import Path, Query, Response

from app.deps import AdminUser, SessionDep, SettingsDep
from app.errors import Forbidden, NotFound, ValidationFailed
from app.models.base import MAX_ID
from app.models.webhook import (
    DeliveryPublic,
    DeliveryStatus,
    SubscriptionCreate,
    SubscriptionPublic,
)
from app.openapi import problem_responses
from app.routers.api import authenticated_router
from app.services import webhooks

router = authenticated_router(
    prefix="/api/v1/webhooks",
    tags=["webhooks"],
    responses=problem_responses(Forbidden, NotFound, ValidationFailed),
)

SubscriptionId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", status_code=201)
def create(
    body: SubscriptionCreate, session: SessionDep, settings: SettingsDep, admin: AdminUser
) -> SubscriptionPublic:
    """Subscribe a URL to events; the answer shows the signing secret, this once."""
    return webhooks.create_subscription(session, settings, admin, body)


@router.get("")
def list_all(session: SessionDep, _admin: AdminUser) -> list[SubscriptionPublic]:
    """Every subscription (without secrets)."""
    return webhooks.list_subscriptions(session)


@router.get("/{subscription_id}")
def get_one(
    subscription_id: SubscriptionId, session: SessionDep, _admin: AdminUser
) -> SubscriptionPublic:
    """One subscription (without its secret)."""
    return webhooks.subscription_public(
        session, webhooks.get_subscription(session, subscription_id)
    )


@router.delete("/{subscription_id}", status_code=204)
def deactivate(subscription_id: SubscriptionId, session: SessionDep, _admin: AdminUser) -> Response:
    """Stop enqueueing deliveries for it (its log is kept)."""
    webhooks.deactivate(session, subscription_id)
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries")
def delivery_log(
    subscription_id: SubscriptionId,
    session: SessionDep,
    _admin: AdminUser,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryPublic]:
    """The subscription's deliveries, newest first: status, attempts, last error."""
    return webhooks.deliveries(session, subscription_id, status, limit)
