"""What an Open311 client sent about the person who reported: kept, shown to no other role."""

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
    created_at: datetime = time_field(nullable=False, default_factory=utcnow)
