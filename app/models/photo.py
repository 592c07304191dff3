"""Photos: the evidence. A row is immutable once written; the bytes live in storage."""

from datetime import datetime
from enum import StrEnum
from typing import Any, get_args

from pydantic import BaseModel
from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.base import json_field, time_field, utcnow


class PhotoKind(StrEnum):
    BEFORE = "before"
    AFTER = "after"
    VERIFICATION = "verification"


# The band, then every column the similar-photo check reads (migration 0018).
BAND_INDEX_COLUMNS = ("issue_id", "kind", "phash", "id")


class Photo(SQLModel, table=True):
    __tablename__ = "photos"
    __table_args__ = tuple(
        Index(f"ix_photos_phash_b{band}_covering", f"phash_b{band}", *BAND_INDEX_COLUMNS)
        for band in range(3)
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issues.id", index=True)
    kind: str = Field(max_length=20)
    sha256: str = Field(index=True, max_length=64)
    content_type: str = Field(max_length=40)
    bytes: int
    width: int
    height: int
    # EXIF DateTimeOriginal as written by the camera: ISO 8601, with its offset where the
    # photo has one (OffsetTimeOriginal), otherwise the camera's local wall time.
    taken_at: str | None = Field(default=None, max_length=40)
    uploaded_at: datetime = time_field(nullable=False, default_factory=utcnow)
    uploaded_by_id: int = Field(foreign_key="users.id")
    exif: dict[str, Any] = json_field(default_factory=dict, nullable=False)
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    location_source: str | None = Field(default=None, max_length=10)
    flags: list[str] = json_field(default_factory=list, nullable=False)
    phash: str | None = Field(default=None, max_length=16)
    # The pHash cut in three bands (21+21+22 bits), each indexed: two hashes within Hamming
    # distance 5 differ in at most one bit in some band (see checks.similar_photos). Each band's
    # index covers what the check reads (BAND_INDEX_COLUMNS): it never reads the table.
    phash_b0: int | None = None
    phash_b1: int | None = None
    phash_b2: int | None = None
    note: str | None = Field(default=None, max_length=2000)
    dispatch_round: int = 0


class PhotoExif(BaseModel):
    make: str | None = None
    model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    orientation: int | None = None
    software: str | None = None


# Each EXIF field's one type (all are `T | None`): stored values of exactly these types are
# what PhotoExif would write back.
_EXIF_TYPES = {name: get_args(f.annotation)[0] for name, f in PhotoExif.model_fields.items()}


def exif_answer(exif: dict[str, Any]) -> dict[str, Any]:
    """The stored EXIF as PhotoExif writes it to JSON: its fields, in order, nothing else."""
    shown = {}
    for name, kind in _EXIF_TYPES.items():
        value = exif.get(name)
        if value is not None and type(value) is not kind:  # e.g. an int where a float goes
            return PhotoExif.model_validate(exif).model_dump()
        shown[name] = value
    return shown


class PhotoUrls(BaseModel):
    thumb: str
    large: str
    original: str
    # Signed, expiring links for <img src>, no token needed (services/signing.py); null in
    # records kept (the evidence JSON and ZIP).
    thumb_signed: str | None
    large_signed: str | None


class FlagNote(BaseModel):
    """A flag as a person reads it: the stable code and its sentence (app/services/flag_text)."""

    code: str
    text: str


class PhotoPublic(BaseModel):
    id: int
    issue_id: int
    kind: PhotoKind
    sha256: str
    content_type: str
    bytes: int
    width: int
    height: int
    taken_at: str | None
    uploaded_at: datetime
    uploaded_by: str
    exif: PhotoExif
    lat: float | None
    lon: float | None
    location_source: str | None
    flags: list[str]
    # The flags as sentences with their figures: Chinese, or English with Accept-Language: en.
    flag_notes: list[FlagNote] = []
    note: str | None
    # The issue's rectification round when the photo was uploaded (see IssuePublic).
    dispatch_round: int
    urls: PhotoUrls
