"""Reporting: an issue with its photos, and more photos on an issue.

Each use case takes the request's photos through the ingest pipeline (`photos.ingest_photo`),
writes the rows and the audit event, remembers the Idempotency-Key and commits once; on any
failure it removes what it stored. A retry with the same key gets the first answer again.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import (
    Forbidden,
    LocationRequired,
    PhotoNotAllowed,
    TooManyFiles,
    ValidationFailed,
)
from app.models import Category, Issue, IssueCodeCounter, Photo, Role, User
from app.models.base import utcnow
from app.models.issue import IssueReport, IssueStatus, LocationForm, LocationSource, PhotoForm
from app.models.photo import PhotoKind
from app.services import audit, changes, checks, grid, idempotency
from app.services.claims import Claim
from app.services.geo import to_wgs84
from app.services.issues import OPEN_STATUSES
from app.services.objects import open_store
from app.services.permissions import (
    RECTIFIERS,
    REPORTERS,
    SUPERVISORS,
    acts_on,
    get_visible,
)
from app.services.photos import IngestedPhoto, ingest_photo
from app.services.storage import Storage, Upload, sha256_of
from app.services.wayfinding import nearest_address
from app.services.zone_area import Area, outside, zone_area

T = TypeVar("T")
Ingested = dict[str, list[IngestedPhoto]]


# Which photos may be added in which status, by whom.
PHOTO_RULES: dict[PhotoKind, tuple[frozenset[IssueStatus], frozenset[Role]]] = {
    PhotoKind.BEFORE: (OPEN_STATUSES, REPORTERS),
    PhotoKind.AFTER: (frozenset({IssueStatus.DISPATCHED}), RECTIFIERS),
    PhotoKind.VERIFICATION: (frozenset({IssueStatus.RECTIFIED}), SUPERVISORS),
}


@dataclass
class Uploads:
    """The files of one request, by form field: open files, or photos spooled while they
    streamed in."""

    fields: dict[str, list[Upload]]


@dataclass(frozen=True)
class Caller:
    """Who asks, and what the service works with on their behalf."""

    session: Session
    settings: Settings
    storage: Storage
    user: User


def report_issue(
    caller: Caller,
    form: IssueReport,
    uploads: Uploads,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    on_write: Callable[[Issue], None] | None = None,
) -> tuple[Issue, bool]:
    """Create an issue with its photos; returns (issue, replayed). `on_write` adds to the
    issue's transaction (Open311: its source and contact)."""
    now = now or utcnow()
    session, user = caller.session, caller.user
    if user.role not in REPORTERS:
        raise Forbidden("Only workers and supervisors report issues")
    # A hotline call has no photo: external systems may report without one.
    _check_counts(
        uploads, caller.settings, required=None if user.role == Role.EXTERNAL else "photos"
    )
    category = session.get(Category, form.category)
    if category is None:
        raise ValidationFailed(f"unknown category {form.category!r}", field="category")

    def write(ingested: Ingested) -> Issue:
        before, after = ingested.get("photos", []), ingested.get("after_photos", [])
        area = zone_area(session, caller.settings)  # read once: the issue and its photos ask it
        issue = _new_issue(caller, form, category, before, area, on_the_spot=bool(after), now=now)
        photos = _add_photo_rows(caller, issue, PhotoKind.BEFORE, before, form, area, now=now)
        photos += _add_photo_rows(caller, issue, PhotoKind.AFTER, after, form, area, now=now)
        data = {
            "code": issue.code,
            "category": issue.category_code,
            "description": issue.description,
            "address": issue.address,
            "lat": issue.lat,
            "lon": issue.lon,
            "location_source": issue.location_source,
            "on_the_spot": bool(after),
            "photos": [_photo_ref(p) for p in photos],
        }
        if on_write is not None:
            on_write(issue)
        audit.append_event(session, issue, user, "report", now, data=data)
        return issue

    intake: _Intake[Issue] = _Intake(caller, uploads, form.model_dump(mode="json"), idempotency_key)
    return intake.run(
        write,
        to_result=lambda issue: {"issue_id": issue.id},
        from_result=lambda result: get_visible(session, result["issue_id"], user),
    )


def add_photos(
    caller: Caller,
    issue_id: int,
    form: PhotoForm,
    uploads: Uploads,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[list[Photo], bool]:
    """Add before, after or verification photos to an issue; returns (photos, replayed)."""
    now = now or utcnow()
    session, user = caller.session, caller.user
    check_photo_rule(session, get_visible(session, issue_id, user), user, form.kind)
    _check_counts(uploads, caller.settings, required="files")

    def write(ingested: Ingested) -> list[Photo]:
        locked = get_visible(session, issue_id, user, lock=True)
        check_photo_rule(session, locked, user, form.kind)
        area = zone_area(session, caller.settings)
        photos = _add_photo_rows(
            caller, locked, form.kind, ingested["files"], form, area, note=form.note, now=now
        )
        changes.touch(session, locked, now)
        data = {"kind": form.kind.value, "photos": [_photo_ref(p) for p in photos]}
        audit.append_event(
            session,
            locked,
            user,
            "add_photos",
            now,
            from_status=locked.status,
            note=form.note,
            data=data,
        )
        return photos

    fields = {"issue_id": issue_id, **form.model_dump(mode="json")}
    intake: _Intake[list[Photo]] = _Intake(caller, uploads, fields, idempotency_key)
    return intake.run(
        write,
        to_result=lambda photos: {"photo_ids": [p.id for p in photos]},
        from_result=lambda result: list(
            session.exec(select(Photo).where(col(Photo.id).in_(result["photo_ids"])))
        ),
    )


def check_photo_rule(session: Session, issue: Issue, user: User, kind: PhotoKind) -> None:
    """Refuse photos of this kind on this issue now, by PHOTO_RULES and the caller's scope."""
    statuses, roles = PHOTO_RULES[kind]
    if user.role not in roles:
        raise Forbidden(f"{user.role} users may not add {kind} photos")
    if kind != PhotoKind.BEFORE and not acts_on(session, user, issue):
        raise Forbidden(f"only the responsible unit may add {kind} photos")
    if issue.status not in statuses:
        raise PhotoNotAllowed(f"{kind} photos cannot be added to a {issue.status} issue")


def _check_counts(uploads: Uploads, settings: Settings, required: str | None) -> None:
    limit = settings.max_photos_per_request
    if required and not uploads.fields.get(required):
        raise ValidationFailed(f"at least one photo is required in {required!r}", field=required)
    for name, files in uploads.fields.items():
        if len(files) > limit:
            raise TooManyFiles(f"{len(files)} files in {name!r}; at most {limit}", max_files=limit)


# --- One request's photos on their way into rows ----------------------------------------------


@dataclass
class _Intake(Generic[T]):
    """Ingest every file of a request, run its write, remember its key, commit once."""

    caller: Caller
    uploads: Uploads
    fields: dict[str, Any]
    key: str | None

    def run(
        self,
        write: Callable[[Ingested], T],
        *,
        to_result: Callable[[T], dict[str, Any]],
        from_result: Callable[[dict[str, Any]], T],
    ) -> tuple[T, bool]:
        """What the first request with this key created, or a new write; returns (what,
        replayed). A concurrent retry that commits first is answered as a replay."""
        replayed = self._replay(self._upload_hashes)
        if replayed is not None:
            return from_result(replayed), True
        try:
            return self._write(write, to_result), False
        except _ConcurrentRetry as retry:
            # The spooled files are stored (or removed) by now: the hashes come from the ingest.
            hashes = retry.hashes
            replayed = self._replay(lambda: hashes)
            assert replayed is not None
            return from_result(replayed), True

    def _upload_hashes(self) -> dict[str, list[str]]:
        return {name: [sha256_of(f) for f in files] for name, files in self.uploads.fields.items()}

    def _replay(self, hashes: Callable[[], dict[str, list[str]]]) -> dict[str, Any] | None:
        """The first result for a retried request; None when the key is new (or absent).
        `hashes` gives the SHA-256 of the request's photos, by field (only a retry needs them)."""
        return idempotency.first_result(
            self.caller.session,
            self.caller.user,
            self.key,
            lambda: idempotency.fingerprint(self.fields, hashes()),
        )

    def _write(self, write: Callable[[Ingested], T], result: Callable[[T], dict[str, Any]]) -> T:
        """Ingest every file, run `write`, commit once; on any failure remove what was stored."""
        session, settings, storage = self.caller.session, self.caller.settings, self.caller.storage
        ingested: Ingested = {name: [] for name in self.uploads.fields}
        # End the transaction of the checks so far: no database lock is held while Pillow works
        # (on SQLite it would be the whole database's write lock). `write` re-reads what it
        # changes.
        session.commit()
        claim = Claim(settings, open_store(settings))
        try:
            for name, files in self.uploads.fields.items():
                for upload in files:
                    ingested[name].append(ingest_photo(upload, settings, storage, claim))
            written = write(ingested)
            session.flush()
            if self.key is not None:
                fingerprint = idempotency.fingerprint(self.fields, _hashes(ingested))
                user = self.caller.user
                idempotency.remember(session, user, self.key, fingerprint, result(written))
            claim.release_in(session.connection())
            session.commit()
        except BaseException as exc:
            session.rollback()
            # What this request stored, unless another request in progress or a committed photo
            # uses the same bytes.
            claim.release_and_remove()
            if self._lost_race(exc):
                raise _ConcurrentRetry(_hashes(ingested)) from exc
            raise
        claim.released()
        return written

    def _lost_race(self, exc: BaseException) -> bool:
        """A concurrent retry with the same key committed first: answer as a replay would."""
        return (
            self.key is not None
            and isinstance(exc, IntegrityError)
            and idempotency.find(self.caller.session, self.caller.user, self.key) is not None
        )


def _hashes(ingested: Ingested) -> dict[str, list[str]]:
    return {name: [p.sha256 for p in photos] for name, photos in ingested.items()}


class _ConcurrentRetry(Exception):
    def __init__(self, hashes: dict[str, list[str]]) -> None:
        super().__init__()
        self.hashes = hashes


# --- Rows ------------------------------------------------------------------------------------


def _new_issue(
    caller: Caller,
    form: IssueReport,
    category: Category,
    before: list[IngestedPhoto],
    area: Area | None,
    *,
    on_the_spot: bool,
    now: datetime,
) -> Issue:
    """The issue row, numbered and flushed (a report fixed on the spot starts rectified)."""
    session, user = caller.session, caller.user
    lat, lon, source = _resolve_location(form, before, area)
    change_seq, updated_at = changes.next_change(session, now)
    nearby = None if form.address else nearest_address(session, lat, lon)
    issue = Issue(
        code=_next_code(session, caller.settings, now),
        category_code=category.code,
        description=form.description,
        status=IssueStatus.RECTIFIED if on_the_spot else IssueStatus.REPORTED,
        lat=lat,
        lon=lon,
        accuracy_m=form.accuracy_m,
        location_source=source,
        address=form.address,
        nearby_address=nearby[0] if nearby else None,
        nearby_address_m=round(nearby[1], 1) if nearby else None,
        # 属地: the grid cell's unit (services/grid.py); the reporter's without a grid.
        **grid.placement(session, lat, lon, user.org_unit_id, route=not on_the_spot),
        reported_by_id=_id(user),
        reported_at=now,
        rectified_at=now if on_the_spot else None,
        rectified_by_id=user.id if on_the_spot else None,
        quantity=form.quantity,
        updated_at=updated_at,
        change_seq=change_seq,
    )
    session.add(issue)
    session.flush()
    return issue


def _resolve_location(
    form: LocationForm, before: list[IngestedPhoto], area: Area | None
) -> tuple[float, float, LocationSource]:
    """The form's position, else the EXIF GPS of the first before-photo that has one inside the
    zone (one outside is flagged outside_zone and never locates an issue), else
    location_required."""
    if form.lat is not None and form.lon is not None:
        lat, lon = to_wgs84(form.lat, form.lon, form.crs)
        return lat, lon, _form_source(form)
    if (form.lat is None) != (form.lon is None):
        raise ValidationFailed("send both lat and lon, or neither", field="lat")
    found = [photo.exif.gps for photo in before if photo.exif.gps is not None]
    gps = next((point for point in found if not outside(area, point)), None)
    if found and gps is None:
        raise LocationRequired(
            "The photo's GPS position lies outside the zone: allow the phone's location, "
            "or choose the point on the map",
            zh="照片的 GPS 位置在辖区之外：请开启手机定位，或在地图上选择位置",
        )
    if gps is None:
        raise LocationRequired(
            "No location: allow the phone's location, or send a photo with GPS in its EXIF"
        )
    return gps[0], gps[1], LocationSource.EXIF


def _form_source(form: LocationForm) -> LocationSource:
    """Where a position the client sent came from, as far as the server can tell: a device fix
    when it came with an accuracy, else typed. The client's `location_source` is never trusted
    (`exif` is only what the server itself read from a photo)."""
    return LocationSource.DEVICE if form.accuracy_m is not None else LocationSource.MANUAL


def _add_photo_rows(
    caller: Caller,
    issue: Issue,
    kind: PhotoKind,
    ingested: list[IngestedPhoto],
    form: LocationForm,
    area: Area | None,
    *,
    note: str | None = None,
    now: datetime,
) -> list[Photo]:
    """Photo rows with their checks, each flushed so that the next one is compared with it."""
    if not ingested:
        return []
    session, settings = caller.session, caller.settings
    device = (
        to_wgs84(form.lat, form.lon, form.crs)
        if form.lat is not None and form.lon is not None
        else (None, None)
    )
    context = checks.UploadContext(issue, kind, device[0], device[1], form.accuracy_m, now)
    context.area = area
    if kind != PhotoKind.BEFORE:
        context.earliest_before_at = checks.earliest_before_capture(session, settings, _id(issue))
    rows = []
    for photo in ingested:
        row = _photo_row(caller, issue, kind, photo, form, note=note, now=now)
        row.flags = checks.photo_flags(session, settings, photo, (row.lat, row.lon), context)
        session.add(row)
        session.flush()
        rows.append(row)
    return rows


def _photo_row(
    caller: Caller,
    issue: Issue,
    kind: PhotoKind,
    photo: IngestedPhoto,
    form: LocationForm,
    *,
    note: str | None,
    now: datetime,
) -> Photo:
    lat, lon, source = _photo_location(photo, form)
    bands = checks.phash_bands(photo.phash)
    return Photo(
        issue_id=_id(issue),
        kind=kind,
        sha256=photo.sha256,
        content_type=photo.content_type,
        bytes=photo.bytes,
        width=photo.width,
        height=photo.height,
        taken_at=photo.exif.taken_at,
        uploaded_at=now,
        uploaded_by_id=_id(caller.user),
        exif=photo.exif.public(),
        lat=lat,
        lon=lon,
        accuracy_m=form.accuracy_m if source != LocationSource.EXIF else None,
        location_source=source,
        phash=photo.phash,
        phash_b0=bands[0],
        phash_b1=bands[1],
        phash_b2=bands[2],
        note=note,
        dispatch_round=issue.dispatch_round,
    )


def _photo_location(
    photo: IngestedPhoto, form: LocationForm
) -> tuple[float | None, float | None, str | None]:
    """A photo's own EXIF GPS first; else where the phone said it was when sending it."""
    if photo.exif.gps is not None:
        return photo.exif.gps[0], photo.exif.gps[1], LocationSource.EXIF
    if form.lat is not None and form.lon is not None:
        lat, lon = to_wgs84(form.lat, form.lon, form.crs)
        return lat, lon, _form_source(form)
    return None, None, None


def _id(row: Issue | User) -> int:
    assert row.id is not None
    return row.id


def _photo_ref(photo: Photo) -> dict[str, Any]:
    return audit.photo_facts(photo)


def _next_code(session: Session, settings: Settings, now: datetime) -> str:
    """JK-YYYYMMDD-NNNN: a per-day counter in the zone's time zone, safe under concurrency."""
    day = now.astimezone(settings.zone).strftime("%Y%m%d")
    prefix = settings.issue_code_prefix
    statement = _code_counter(session.get_bind().dialect.name)
    number = session.execute(statement, {"prefix": prefix, "day": day}).scalar_one()
    return f"{prefix}-{day}-{number:04d}"


@functools.cache
def _code_counter(dialect: str) -> ReturningInsert[tuple[int]]:
    """INSERT … ON CONFLICT DO UPDATE … RETURNING the day's next number (built once)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(IssueCodeCounter)
        .values(prefix=bindparam("prefix"), day=bindparam("day"), last=1)
        .on_conflict_do_update(
            index_elements=["prefix", "day"], set_={"last": col(IssueCodeCounter.last) + 1}
        )
        .returning(col(IssueCodeCounter.last))
    )
