"""Org units: the district, its offices (办事处), communities (社区) and grid cells (网格), and
the campaign's work groups (工作组) and task forces (专班)."""

from enum import StrEnum

from pydantic import BaseModel
from sqlmodel import Field, SQLModel


class OrgKind(StrEnum):
    DISTRICT = "district"
    OFFICE = "office"
    COMMUNITY = "community"
    GRID = "grid"
    # The campaign's own units beside the territorial ones: 工作组 (work groups, each under an
    # office) and 专班 (task forces for one kind of problem, under the command).
    WORK_GROUP = "work_group"
    TASK_FORCE = "task_force"


class OrgUnit(SQLModel, table=True):
    __tablename__ = "org_units"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=40)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=20)
    parent_id: int | None = Field(default=None, foreign_key="org_units.id")
    # Materialised path "/1/4/9/": the subtree of a unit is every path starting with its own.
    path: str = Field(default="/", index=True, max_length=400)


class OrgUnitPublic(BaseModel):
    code: str
    name: str
    kind: OrgKind
    parent_code: str | None
