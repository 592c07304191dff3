"""Flags (红旗/黑旗) the campaign's command awards for a week: its decisions, kept apart from
the issues' events in their own append-only hash chain (app/services/rankings_flags.py)."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import time_field


class RankingFlagAward(SQLModel, table=True):
    """One decision: for the week, this unit gets this flag (None: no flag). The latest
    decision for a week and unit counts; earlier ones stay, as the chain's history."""

    __tablename__ = "ranking_flag_awards"

    id: int | None = Field(default=None, primary_key=True)
    # The position in the chain of every decision (1, 2, …), unique: two writers cannot fork it.
    seq: int = Field(unique=True)
    week: str = Field(max_length=8, index=True)  # ISO week, 2026-W49
    org_unit_id: int = Field(foreign_key="org_units.id")
    org_unit: str = Field(max_length=40)  # the code, as the chain hashes it
    flag: str | None = Field(default=None, max_length=10)  # red, black or None
    note: str = Field(max_length=2000)
    awarded_by_id: int = Field(foreign_key="users.id")
    awarded_by: str = Field(max_length=80)
    awarded_at: datetime = time_field(nullable=False)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
