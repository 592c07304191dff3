"""Secrets every replica must share (the photo links' signing key), kept in the database."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import time_field


class AppSecret(SQLModel, table=True):
    """One named secret, written once by whichever process needs it first (never changed)."""

    __tablename__ = "app_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=512)
    created_at: datetime = time_field(nullable=False)
