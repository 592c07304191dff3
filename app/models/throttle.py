"""Failed sign-ins per username and per client address, shared by every server process."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import time_field


class LoginThrottle(SQLModel, table=True):
    __tablename__ = "login_throttles"

    # "user:<username>" or "ip:<client address>".
    key: str = Field(primary_key=True, max_length=120)
    failures: int = 0
    last_failure_at: datetime = time_field(nullable=False, index=True)
    # No sign-in for this key is checked before this time (None: not blocked).
    blocked_until: datetime | None = time_field()
