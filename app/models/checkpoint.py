"""Signed checkpoints of the audit chains: an Ed25519 signature of one issue's chain head."""

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import time_field


class AuditCheckpoint(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"
    # A head is signed once.
    __table_args__ = (UniqueConstraint("issue_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    signed_at: datetime = time_field(nullable=False, index=True)
    issue_id: int = Field(foreign_key="issues.id", index=True)
    seq: int
    hash: str = Field(max_length=64)
    # Ed25519 over audit_checkpoint.message(…), hex; key_id: the first 16 hex digits of the
    # SHA-256 of the raw public key.
    signature: str = Field(max_length=128)
    key_id: str = Field(max_length=16)


class CheckpointPublic(BaseModel):
    issue_id: int
    seq: int
    hash: str
    # Exactly as signed: UTC, microseconds, "Z".
    signed_at: str
    key_id: str
    signature: str
    # The bytes signed, as text (see the README, "Signed checkpoints").
    message: str


class CheckpointPage(BaseModel):
    public_key_pem: str
    key_id: str
    items: list[CheckpointPublic]
    next_cursor: int | None
