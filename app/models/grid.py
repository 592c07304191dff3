"""Grid cells (单元网格): polygons of the zone, each the responsibility of an org unit.

A cell is versioned: an import that changes a cell retires its row (`retired_at`) and adds
the next version, so what a cell was when an issue was routed to it stays readable. Issues
keep the code and name of their cell themselves (app/models/issue.py).
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlmodel import Field, Index, SQLModel, text

from app.models.base import json_field, time_field, utcnow


class GridLevel(StrEnum):
    """The levels of 属地管理, coarsest first (the same words as the org units' kinds)."""

    DISTRICT = "district"
    OFFICE = "office"
    COMMUNITY = "community"
    GRID = "grid"


# Finer levels rank higher: a point in a 网格 is routed there rather than to its 社区.
LEVEL_RANK = {GridLevel.DISTRICT: 0, GridLevel.OFFICE: 1, GridLevel.COMMUNITY: 2, GridLevel.GRID: 3}

# What an import file may call a level: the Chinese words of the field, or the English ones.
LEVEL_NAMES: dict[str, GridLevel] = {
    "区": GridLevel.DISTRICT,
    "街道": GridLevel.OFFICE,
    "办事处": GridLevel.OFFICE,
    "街道·办事处": GridLevel.OFFICE,
    "专班": GridLevel.OFFICE,
    "社区": GridLevel.COMMUNITY,
    "网格": GridLevel.GRID,
    **{level.value: level for level in GridLevel},
}


class GridImport(SQLModel, table=True):
    """One import that changed the grid; its token names the grid's revision."""

    __tablename__ = "grid_imports"

    id: int | None = Field(default=None, primary_key=True)
    # Random: a routing index built for another token (or another database) is stale.
    token: str = Field(unique=True, max_length=32)
    sha256: str = Field(max_length=64)
    imported_at: datetime = time_field(nullable=False, default_factory=utcnow)
    added: int = 0
    changed: int = 0
    retired: int = 0


class GridCell(SQLModel, table=True):
    __tablename__ = "grid_cells"
    __table_args__ = (
        # One current version per code; retired versions stay as history.
        Index(
            "ux_grid_cells_current_code",
            "code",
            unique=True,
            sqlite_where=text("retired_at IS NULL"),
            postgresql_where=text("retired_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, index=True)
    version: int = 1
    name: str = Field(max_length=100)
    level: str = Field(max_length=20)
    parent_code: str | None = Field(default=None, max_length=40)
    org_unit_id: int = Field(foreign_key="org_units.id", index=True)
    worker_id: int | None = Field(default=None, foreign_key="users.id")
    # A GeoJSON Polygon or MultiPolygon in WGS-84 (lon, lat), as imported (after any GCJ-02
    # conversion).
    geometry: dict[str, Any] = json_field(nullable=False)
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    # SHA-256 of what the import said about the cell: an unchanged cell is left alone.
    fingerprint: str = Field(max_length=64)
    import_id: int = Field(foreign_key="grid_imports.id")
    valid_from: datetime = time_field(nullable=False, default_factory=utcnow)
    retired_at: datetime | None = time_field()


class GridCellRef(BaseModel):
    """The cell an issue was routed to, as it was then."""

    code: str
    name: str


class GridCellPublic(BaseModel):
    code: str
    name: str
    level: GridLevel
    parent: str | None
    org_unit: str
    worker: str | None
    version: int
    valid_from: datetime
    # [min_lon, min_lat, max_lon, max_lat], WGS-84.
    bbox: list[float]


class GridImportResult(BaseModel):
    added: int
    changed: int
    retired: int
    unchanged: int
    # None when the file changed nothing (no import is recorded then).
    import_id: int | None
