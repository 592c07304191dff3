"""Webhooks: subscriptions, and the outbox of their deliveries (written with the change)."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AnyUrl, AwareDatetime, BaseModel
from pydantic import Field as PydanticField
from sqlmodel import Field, Index, SQLModel, UniqueConstraint

from app.models.base import json_field, time_field, utcnow


class WebhookEvent(StrEnum):
    ISSUE_CREATED = "issue.created"
    STATUS_CHANGED = "issue.status_changed"
    OVERDUE = "issue.overdue"
    FLAGS_RAISED = "issue.flags_raised"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retried for the whole retry window without success


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=200)
    events: list[str] = json_field(default_factory=list, nullable=False)
    # Optional filters: issues of this unit or below; of these categories.
    org_unit_id: int | None = Field(default=None, foreign_key="org_units.id")
    categories: list[str] = json_field(default_factory=list, nullable=False)
    active: bool = True
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event for one subscription: written in the transaction of the change it tells of."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_key"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="webhook_subscriptions.id", index=True)
    event: str = Field(max_length=40)
    # What the delivery is about, unique per subscription (one delivery per event, also when
    # two processes scan for overdue issues at once): "issue:7:3" (event 3 of issue 7).
    event_key: str = Field(max_length=120)
    issue_id: int | None = Field(default=None, foreign_key="issues.id")
    payload: dict[str, Any] = json_field(default_factory=dict, nullable=False)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = time_field(nullable=False, default_factory=utcnow)
    # A sender holds the delivery until then (so that two processes never send it at once).
    lease_until: datetime | None = time_field()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)
    delivered_at: datetime | None = time_field()


class SubscriptionCreate(BaseModel):
    url: AnyUrl
    events: list[WebhookEvent] = PydanticField(min_length=1)
    org_unit: str | None = PydanticField(default=None, max_length=40)
    categories: list[str] = PydanticField(default_factory=list, max_length=50)
    # Generated when not given; shown once, in the answer to the creation.
    secret: str | None = PydanticField(default=None, min_length=16, max_length=200)


class SubscriptionPublic(BaseModel):
    id: int
    url: str
    events: list[str]
    org_unit: str | None
    categories: list[str]
    active: bool
    created_at: AwareDatetime
    secret: str | None = None  # only in the answer to the creation


class DeliveryPublic(BaseModel):
    id: int
    event: str
    event_key: str
    issue_id: int | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: AwareDatetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: AwareDatetime
    delivered_at: AwareDatetime | None
