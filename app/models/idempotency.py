"""Idempotency keys: a retried POST returns what the first one created."""

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import json_field, time_field, utcnow


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    key: str = Field(max_length=200)
    request_sha256: str = Field(max_length=64)
    # What the first request created: {"issue_id": 7} or {"photo_ids": [3, 4]}.
    result: dict[str, Any] = json_field(default_factory=dict, nullable=False)
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)
