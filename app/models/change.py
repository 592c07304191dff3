"""The change counter: one row, bumped in the same transaction as every write."""

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from app.models.base import time_field

COUNTER_ID = 1


class ChangeCounter(SQLModel, table=True):
    """The number of the last change, and the latest time stamped on a change.

    Every write takes the next number with one UPDATE … RETURNING, so the row lock orders
    writers: see app/services/changes.py.
    """

    __tablename__ = "change_counter"

    id: int = Field(default=COUNTER_ID, primary_key=True)
    value: int = Field(default=0, sa_type=BigInteger)
    changed_at: datetime | None = time_field()
