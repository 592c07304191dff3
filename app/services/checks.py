"""Photo checks: the flags an auditor reads. Flags inform; they never refuse a photo.

Each flag and its threshold is documented in the README; every threshold is a setting.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, union
from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Issue, Photo
from app.models.photo import PhotoKind
from app.services.geo import distance_m
from app.services.photos import IngestedPhoto
from app.services.zone_area import Area, outside


class Flag(StrEnum):
    NO_GPS = "no_gps"
    NO_CAPTURE_TIME = "no_capture_time"
    GPS_FAR_FROM_DEVICE = "gps_far_from_device"
    FAR_FROM_ISSUE = "far_from_issue"
    TAKEN_BEFORE_REPORT = "taken_before_report"
    TAKEN_IN_FUTURE = "taken_in_future"
    STALE_CAPTURE = "stale_capture"
    DUPLICATE_PHOTO = "duplicate_photo"
    SIMILAR_TO_OTHER_ISSUE = "similar_to_other_issue"
    AFTER_MATCHES_BEFORE = "after_matches_before"
    EDITED = "edited"
    EXIF_UNREADABLE = "exif_unreadable"
    # The EXIF position lies outside the zone's bounding area (app/services/zone_area.py).
    OUTSIDE_ZONE = "outside_zone"


# After-photo flags that make `verify_pass` need a note (the override goes on the audit trail).
# outside_zone: an after-photo whose camera says it was taken outside the zone cannot show the
# spot fixed, whatever the phone reported when sending it (and far_from_issue may not catch it:
# that compares the photo's position, which is the EXIF one only when the photo has one).
NEEDS_OVERRIDE_NOTE = frozenset(
    {
        Flag.OUTSIDE_ZONE,
        Flag.FAR_FROM_ISSUE,
        Flag.TAKEN_BEFORE_REPORT,
        Flag.AFTER_MATCHES_BEFORE,
        Flag.SIMILAR_TO_OTHER_ISSUE,
        Flag.DUPLICATE_PHOTO,
    }
)

# EXIF Software values (lower-cased substrings) that name a photo editor or a camera app that
# rewrites time and place. The one list of them.
EDITORS = (
    "photoshop",
    "lightroom",
    "snapseed",
    "gimp",
    "picsart",
    "facetune",
    "vsco",
    "pixlr",
    "canva",
    "afterlight",
    "meitu",
    "美图",
    "醒图",
    "xingtu",
    "黄油相机",
    "polarr",
    "泼辣修图",
    "b612",
    "wink",
    "今日水印",
    "水印相机",
    "马克水印",
)

BAND_BITS = (21, 21, 22)
# Two hashes within distance 5 differ in at most one bit in at least one of the three bands
# (else each band holds ≥ 2 differences: ≥ 6 in all), so probing every band with its value and
# its one-bit neighbours (1 + 21 or 22 values) finds every match through the indexes. A probe
# value matches 1 in 2^21 random stored hashes: ~32 candidates at a million photos, ~0 at 10k.
MAX_INDEXED_DISTANCE = 5


def phash_bands(phash: str) -> list[int]:
    """The 64-bit hash cut in three bands of 21, 21 and 22 bits."""
    value = int(phash, 16)
    bands, shift = [], 64
    for bits in BAND_BITS:
        shift -= bits
        bands.append((value >> shift) & ((1 << bits) - 1))
    return bands


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def band_probes(phash: str) -> dict[str, list[int]]:
    """Parameters of `_SIMILAR`: each band of the hash and the values one bit away from it."""
    return {
        f"b{i}": [band] + [band ^ (1 << bit) for bit in range(bits)]
        for i, (band, bits) in enumerate(zip(phash_bands(phash), BAND_BITS, strict=True))
    }


# Built once (similarity is checked for every photo stored): stored photos with a band equal
# to one of the hash's or one bit away from it; in any issue, in other issues, in one issue.
# One SELECT per band, united: each probes its band's covering index (migration 0018: the
# band, then issue_id, kind, phash and id), so that a probe reads only index entries, never
# the table (PostgreSQL: an index-only scan). An OR of the three was one bitmap scan that read
# a table row per candidate, and candidates grow with the table: 66 probes × 1 in 2^21 stored
# hashes, ~94 rows at 3 million photos. UNION drops a photo that two bands both propose.
_BANDS = (Photo.phash_b0, Photo.phash_b1, Photo.phash_b2)


def _candidates(scope: bool | None) -> Any:
    parts = []
    for i, band in enumerate(_BANDS):
        part = select(Photo.id, Photo.issue_id, Photo.kind, Photo.phash).where(
            col(band).in_(bindparam(f"b{i}", expanding=True))
        )
        if scope is True:
            part = part.where(col(Photo.issue_id) != bindparam("issue_id"))
        elif scope is False:
            part = part.where(col(Photo.issue_id) == bindparam("issue_id"))
        parts.append(part)
    return union(*parts)


_SIMILAR = {scope: _candidates(scope) for scope in (None, True, False)}
_DUPLICATE = select(Photo.id).where(Photo.sha256 == bindparam("sha256")).limit(1)


@dataclass(frozen=True)
class SimilarPhoto:
    id: int
    issue_id: int
    kind: str
    distance: int


def similar_photos(
    session: Session,
    phash: str,
    max_distance: int,
    *,
    issue_id: int | None = None,
    other_issues: bool = True,
) -> list[SimilarPhoto]:
    """Stored photos within `max_distance` (≤ 5) of the hash, found through the band indexes.

    With `issue_id`: only photos of other issues (`other_issues`), or only of that issue.
    """
    return list(_similar(session, phash, max_distance, issue_id, other_issues))


def _similar(
    session: Session, phash: str, max_distance: int, issue_id: int | None, other_issues: bool
) -> Iterator[SimilarPhoto]:
    assert max_distance <= MAX_INDEXED_DISTANCE
    scope = None if issue_id is None else other_issues
    params: dict[str, Any] = {**band_probes(phash), "issue_id": issue_id}
    candidates = session.execute(_SIMILAR[scope], params).all()  # a few rows, read to the end
    for photo_id, photo_issue, kind, other in candidates:
        if other is not None and (distance := hamming(phash, other)) <= max_distance:
            yield SimilarPhoto(photo_id, photo_issue, kind, distance)


@dataclass
class UploadContext:
    """What the checks compare a new photo with."""

    issue: Issue
    kind: PhotoKind
    device_lat: float | None
    device_lon: float | None
    accuracy_m: float | None
    uploaded_at: datetime
    # The earliest capture time among the issue's before-photos (None: none has one).
    earliest_before_at: datetime | None = None
    # The zone's bounding area (None: none is known).
    area: Area | None = None


def photo_flags(
    session: Session,
    settings: Settings,
    photo: IngestedPhoto,
    location: tuple[float | None, float | None],
    context: UploadContext,
) -> list[str]:
    """Every flag for a photo about to be stored (rows flushed before it are compared too)."""
    flags: set[str] = set(photo.flags)
    exif = photo.exif
    if exif.gps is None:
        flags.add(Flag.NO_GPS)
    else:
        if outside(context.area, exif.gps):
            flags.add(Flag.OUTSIDE_ZONE)
        if context.device_lat is not None and context.device_lon is not None:
            tolerance = max(
                settings.flag_device_gps_min_m,
                settings.flag_device_gps_accuracy_factor * (context.accuracy_m or 0),
            )
            if distance_m(*exif.gps, context.device_lat, context.device_lon) > tolerance:
                flags.add(Flag.GPS_FAR_FROM_DEVICE)
    flags |= _time_flags(settings, photo, context)
    if exif.software and any(editor in exif.software.lower() for editor in EDITORS):
        flags.add(Flag.EDITED)
    if session.execute(_DUPLICATE, {"sha256": photo.sha256}).first() is not None:
        flags.add(Flag.DUPLICATE_PHOTO)
    issue_id = context.issue.id
    limit = settings.phash_max_distance
    if next(_similar(session, photo.phash, limit, issue_id, other_issues=True), None):
        flags.add(Flag.SIMILAR_TO_OTHER_ISSUE)
    if context.kind != PhotoKind.BEFORE:
        lat, lon = location
        if lat is not None and lon is not None:
            far = distance_m(lat, lon, context.issue.lat, context.issue.lon)
            if far > settings.flag_far_from_issue_m:
                flags.add(Flag.FAR_FROM_ISSUE)
        same_issue = _similar(session, photo.phash, limit, issue_id, other_issues=False)
        if any(other.kind == PhotoKind.BEFORE for other in same_issue):
            flags.add(Flag.AFTER_MATCHES_BEFORE)
    return sorted(flags)


def _time_flags(settings: Settings, photo: IngestedPhoto, context: UploadContext) -> set[str]:
    taken = capture_time(photo.exif.taken_at, settings)
    if taken is None:
        return {Flag.NO_CAPTURE_TIME}
    flags: set[str] = set()
    if taken > context.uploaded_at + timedelta(minutes=settings.flag_future_minutes):
        flags.add(Flag.TAKEN_IN_FUTURE)
    if taken < context.uploaded_at - timedelta(hours=settings.flag_stale_hours):
        flags.add(Flag.STALE_CAPTURE)
    if context.kind != PhotoKind.BEFORE:
        reported = context.earliest_before_at or context.issue.reported_at
        if taken < reported:
            flags.add(Flag.TAKEN_BEFORE_REPORT)
    return flags


def capture_time(taken_at: str | None, settings: Settings) -> datetime | None:
    """A photo's capture time; a camera's wall time without offset is the zone's local time."""
    if taken_at is None:
        return None
    moment = datetime.fromisoformat(taken_at)
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.zone)


def earliest_before_capture(session: Session, settings: Settings, issue_id: int) -> datetime | None:
    query = select(Photo.taken_at).where(
        Photo.issue_id == issue_id, Photo.kind == PhotoKind.BEFORE, col(Photo.taken_at).is_not(None)
    )
    times = [capture_time(taken_at, settings) for taken_at in session.exec(query)]
    return min((t for t in times if t is not None), default=None)
