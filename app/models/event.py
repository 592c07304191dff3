"""The audit trail: an append-only hash chain of events per issue."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Field, Index, SQLModel, UniqueConstraint

from app.models.base import json_field, time_field


class IssueEvent(SQLModel, table=True):
    __tablename__ = "issue_events"
    # The dashboards count events of an action in a period.
    __table_args__ = (
        UniqueConstraint("issue_id", "seq"),
        Index("ix_issue_events_action_at", "action", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issues.id", index=True)
    seq: int
    at: datetime = time_field(nullable=False)
    actor_id: int = Field(foreign_key="users.id")
    actor: str = Field(max_length=60)
    action: str = Field(max_length=40)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    note: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any] = json_field(default_factory=dict, nullable=False)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class IssueEventPublic(BaseModel):
    seq: int
    # Exactly as hashed: UTC, microseconds, "Z" (see the README on the canonical form).
    at: str
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str
