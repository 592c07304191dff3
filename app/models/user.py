"""Users, their roles and their API tokens."""

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from app.models.base import Text, time_field, utcnow


class Role(StrEnum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    VIEWER = "viewer"
    ADMIN = "admin"
    # Another system (the 12345 hotline, a 随手拍 app) speaking Open311 with its api_key.
    EXTERNAL = "external"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=60)
    display_name: str = Field(default="", max_length=100)
    role: str = Field(max_length=20)
    org_unit_id: int = Field(foreign_key="org_units.id", index=True)
    password_hash: str | None = Field(default=None, max_length=200)
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)
    # A disabled user cannot sign in, and their tokens were revoked when they were disabled.
    disabled_at: datetime | None = time_field()


def token_digest(token: str) -> str:
    """What `ApiToken.token_sha256` holds of a token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_sha256: str = Field(unique=True, max_length=64)
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)
    revoked_at: datetime | None = time_field()
    # Last seen in a request, to the hour (None: not since it was issued); for idle expiry.
    last_used_at: datetime | None = time_field()


class UserAccount(BaseModel):
    """What an admin sees of a user they disabled, enabled or signed out everywhere."""

    username: str
    role: str
    org_unit: str
    disabled_at: datetime | None
    tokens_revoked: int


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    org_unit: str


class LoginRequest(BaseModel):
    username: Text = Field(min_length=1, max_length=60)
    password: Text = Field(min_length=1, max_length=200)


class LoginResponse(BaseModel):
    token: str
    user: UserPublic
