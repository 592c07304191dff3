"""Claims of the SHA-256s that requests in progress store, shared by every replica."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import time_field


class StorageClaim(SQLModel, table=True):
    """One request's claim on one photo's objects (app/services/claims.py), from before they
    are put until the request commits or gives up; past `expires_at` it is a dead request's."""

    __tablename__ = "storage_claims"

    sha256: str = Field(primary_key=True, max_length=64)
    token: str = Field(primary_key=True, max_length=32)
    expires_at: datetime = time_field(nullable=False, index=True)
