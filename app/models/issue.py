"""Issues of the ledger (问题台账) and their API shapes."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import BigInteger, Row, false
from sqlmodel import Field, Index, SQLModel, UniqueConstraint

from app.models.base import MAX_ID, Text, time_field, utcnow
from app.models.geo import Crs
from app.models.grid import GridCellRef
from app.models.photo import PhotoKind, PhotoPublic


class IssueStatus(StrEnum):
    REPORTED = "reported"
    ACCEPTED = "accepted"
    DISPATCHED = "dispatched"
    RECTIFIED = "rectified"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


class LocationSource(StrEnum):
    EXIF = "exif"
    DEVICE = "device"
    MANUAL = "manual"


class Issue(SQLModel, table=True):
    __tablename__ = "issues"
    # The change feed walks (change_seq, id) with a keyset cursor; updated_since filters on
    # updated_at.
    __table_args__ = (
        Index("ix_issues_updated_at_id", "updated_at", "id"),
        Index("ix_issues_change_seq_id", "change_seq", "id"),
        # Open311 address_string placement (services/geocode.py) matches addresses exactly.
        Index("ix_issues_address", "address"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=40)
    category_code: str = Field(foreign_key="categories.code", index=True)
    # 4000: what Open311 accepts; the JSON API's form still takes at most 2000.
    description: str = Field(default="", max_length=4000)
    status: str = Field(index=True, max_length=20)
    # Indexed for the nearest address (app/services/wayfinding.py): issues near a point are
    # read through a narrow band of latitude, not a scan.
    lat: float = Field(index=True)
    lon: float
    accuracy_m: float | None = None
    location_source: str = Field(max_length=10)
    address: str | None = Field(default=None, max_length=300)
    # Reported without an address: the nearest other issue's address within 300 m then, and its
    # distance (app/services/wayfinding.py), for the answers' address_hint.
    nearby_address: str | None = Field(default=None, max_length=300)
    nearby_address_m: float | None = None
    org_unit_id: int = Field(foreign_key="org_units.id", index=True)
    reported_by_id: int = Field(foreign_key="users.id", index=True)
    reported_at: datetime = time_field(nullable=False, index=True)
    accepted_at: datetime | None = time_field()
    dispatched_at: datetime | None = time_field()
    deadline_at: datetime | None = time_field(index=True)
    rectified_at: datetime | None = time_field()
    rectified_by_id: int | None = Field(default=None, foreign_key="users.id")
    closed_at: datetime | None = time_field(index=True)
    verified_by_id: int | None = Field(default=None, foreign_key="users.id")
    # Bumped every time the issue enters `dispatched`: an after-photo counts for the round
    # in which it was uploaded, so a rework needs a fresh one.
    dispatch_round: int = 0
    rework_count: int = 0
    quantity: float | None = None
    # What the rectification dealt with, in the category's unit (e.g. 12000 m² covered), as
    # given at submit_rectification; summed by category in /stats.
    rectified_quantity: float | None = None
    duplicate_of_id: int | None = Field(default=None, foreign_key="issues.id")
    # The pending 延期申请 (request_extension): the deadline asked for, why, by whom, when.
    # Cleared when a supervisor decides or the issue leaves `dispatched`; the events keep it.
    extension_deadline_at: datetime | None = time_field(index=True)
    extension_note: str | None = Field(default=None, max_length=2000)
    # A user's id, without a foreign key (see migration 0009: SQLite could not drop it again).
    extension_requested_by_id: int | None = None
    extension_requested_at: datetime | None = time_field()
    version: int = Field(default=1)
    updated_at: datetime = time_field(nullable=False, default_factory=utcnow)
    # The number of the issue's latest change, from the change counter (app/services/changes.py):
    # strictly increasing in commit order. 0 only for rows loaded around the services.
    change_seq: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    # Where the report came from: None for Gridproof's own users, else the external system's
    # source (its username, e.g. "12345"), so that stats can count them apart.
    source: str | None = Field(default=None, max_length=60, index=True)
    # The grid cell the issue was routed to when reported, as it was then (app/services/grid.py);
    # outside_grid: a grid exists and the point lies in none of its cells.
    grid_cell_code: str | None = Field(default=None, max_length=40, index=True)
    grid_cell_name: str | None = Field(default=None, max_length=100)
    outside_grid: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


def is_overdue(issue: "Issue | Row[Any]", now: datetime) -> bool:
    """Dispatched and past its deadline (derived, never stored: it changes with the clock)."""
    return (
        issue.status == IssueStatus.DISPATCHED
        and issue.deadline_at is not None
        and now > issue.deadline_at
    )


class IssueCodeCounter(SQLModel, table=True):
    """The last number handed out per day, for codes like JK-20261127-0007."""

    __tablename__ = "issue_code_counters"
    __table_args__ = (UniqueConstraint("prefix", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=10)
    day: str = Field(max_length=8)
    last: int = 0


class Navigation(BaseModel):
    """Links that open a map app at the issue: AMap takes GCJ-02, Baidu BD-09 (converted)."""

    amap: str
    baidu: str


class ExtensionRequest(BaseModel):
    """A pending 延期申请: the deadline the office asks for and why."""

    deadline: datetime
    note: str
    requested_by: str
    requested_at: datetime


class IssuePublic(BaseModel):
    id: int
    code: str
    category: str
    description: str
    status: IssueStatus
    lat: float
    lon: float
    accuracy_m: float | None
    location_source: LocationSource
    address: str | None
    org_unit: str
    reported_by: str
    reported_at: datetime
    accepted_at: datetime | None
    dispatched_at: datetime | None
    deadline: datetime | None
    rectified_at: datetime | None
    rectified_by: str | None
    closed_at: datetime | None
    verified_by: str | None
    overdue: bool
    rework_count: int
    # Which rectification round the issue is in (bumped each time it enters `dispatched`):
    # submit_rectification needs an after-photo of the current round.
    dispatch_round: int
    quantity: float | None
    quantity_unit: str
    # Given with submit_rectification (整改数量), in quantity_unit; None until then.
    rectified_quantity: float | None = None
    duplicate_of: int | None
    # The pending extension request, for a supervisor to approve or refuse (else None).
    extension_request: ExtensionRequest | None = None
    version: int
    updated_at: datetime
    photos: list[PhotoPublic]
    # Where the report came from (None: Gridproof's own users; else e.g. "12345").
    source: str | None = None
    # The union of the photos' flags (see the README).
    flags: list[str]
    allowed_actions: list[str]
    # The coordinate system of lat/lon (and of the photos' lat/lon) in this response.
    crs: Crs = Crs.WGS84
    # The grid cell the issue was routed to (None without a grid, or outside it).
    grid_cell: GridCellRef | None = None
    outside_grid: bool = False
    # 高德地图 / 百度地图 links to the issue's point (always of the stored point, whatever crs).
    navigation: Navigation
    # The address, else the nearest known one when reported, with its distance ("距 XX 约
    # 120 m"), else the grid cell's name, else None; Chinese, or English with Accept-Language: en.
    address_hint: str | None = None


class IssueView(StrEnum):
    """How much of each issue a list answers: all of it, or what a dashboard shows."""

    FULL = "full"
    COMPACT = "compact"


class IssueCompact(BaseModel):
    """An issue as a dashboard's list and map show it (`GET /issues?view=compact`): no photo
    records, no people, no allowed actions; `GET /issues/{id}` has the rest."""

    id: int
    code: str
    category: str
    status: IssueStatus
    lat: float
    lon: float
    org_unit: str
    # As given when reported (the dashboard's overdue list shows it); null when none was.
    address: str | None = None
    grid_cell: GridCellRef | None = None
    outside_grid: bool = False
    reported_at: datetime
    deadline: datetime | None
    overdue: bool
    rework_count: int
    source: str | None = None
    version: int
    updated_at: datetime
    photo_count: int
    # The first before-photo's thumbnail (as in the full answer's photos[].urls.thumb).
    thumb: str | None
    flags: list[str]
    crs: Crs = Crs.WGS84


class IssueCompactPage(BaseModel):
    items: list[IssueCompact]
    next_cursor: str | None
    has_more: bool


class IssuePage(BaseModel):
    items: list[IssuePublic]
    # The position after the last item (also on the last page): resume from it later.
    next_cursor: str | None
    has_more: bool


class TransitionRequest(BaseModel):
    action: Text
    note: Text | None = PydanticField(default=None, max_length=2000)
    org_unit: Text | None = None
    deadline: AwareDatetime | datetime | None = None
    duplicate_of: int | None = PydanticField(default=None, ge=1, le=MAX_ID)
    # submit_rectification: the quantity rectified, in the category's unit.
    quantity: float | None = PydanticField(default=None, ge=0, le=1e9, allow_inf_nan=False)


class LocationForm(BaseModel):
    """A position as the phone sends it; converted to WGS-84 before it is stored."""

    lat: float | None = PydanticField(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = PydanticField(default=None, ge=-180, le=180, allow_inf_nan=False)
    accuracy_m: float | None = PydanticField(default=None, ge=0, le=100_000, allow_inf_nan=False)
    crs: Crs = Crs.WGS84
    # Accepted and ignored: the server decides (EXIF it read; device with accuracy_m; manual).
    location_source: LocationSource | None = None


class IssueReport(LocationForm):
    category: Text = PydanticField(min_length=1, max_length=40)
    description: Text = PydanticField(default="", max_length=2000)
    address: Text | None = PydanticField(default=None, max_length=300)
    quantity: float | None = PydanticField(default=None, ge=0, le=1e9, allow_inf_nan=False)


class PhotoForm(LocationForm):
    kind: PhotoKind
    note: Text | None = PydanticField(default=None, max_length=2000)
