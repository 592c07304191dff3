"""What an Open311 client sent beside the issue (the person who reported, a media_url): kept,
shown to no other role."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import time_field, utcnow


class IssueContact(SQLModel, table=True):
    __tablename__ = "issue_contacts"

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issues.id", unique=True)
    # The external user whose api_key sent it: the only one who reads it back.
    sent_by_id: int = Field(foreign_key="users.id")
    email: str | None = Field(default=None, max_length=200)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    # A photo elsewhere: recorded, never fetched (only 127.0.0.1 is reachable, and photos come
    # as evidence through `media`).
    media_url: str | None = Field(default=None, max_length=2000)
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)
