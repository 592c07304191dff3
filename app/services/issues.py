"""Issues: reporting, photos, and the rectification state machine.

TRANSITIONS is the one table of the state machine: the transition endpoint, the permission
check and `allowed_actions` all read it.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Row, bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import get_read_engine
from app.errors import (
    AfterPhotoRequired,
    Forbidden,
    InvalidTransition,
    LocationRequired,
    NotFound,
    OverrideNoteRequired,
    PhotoNotAllowed,
    PreconditionRequired,
    TooManyFiles,
    ValidationFailed,
    VersionConflict,
)
from app.models import Category, Issue, IssueCodeCounter, OrgUnit, Photo, Role, User
from app.models.base import as_aware, utcnow
from app.models.issue import (
    IssueReport,
    IssueStatus,
    LocationForm,
    LocationSource,
    PhotoForm,
    TransitionRequest,
)
from app.models.photo import PhotoKind
from app.services import audit, changes, checks, grid, idempotency, orgs
from app.services.geo import to_wgs84
from app.services.permissions import RECTIFIERS, REPORTERS, SUPERVISORS, acts_on, visible_issues
from app.services.photos import IngestedPhoto, Upload, ingest_photo, sha256_of
from app.services.storage import Claim, Storage

S = IssueStatus


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    MARK_DUPLICATE = "mark_duplicate"
    DISPATCH = "dispatch"
    RETURN = "return"
    EXTEND_DEADLINE = "extend_deadline"
    SUBMIT_RECTIFICATION = "submit_rectification"
    VERIFY_PASS = "verify_pass"
    VERIFY_FAIL = "verify_fail"
    REOPEN = "reopen"


@dataclass(frozen=True)
class Rule:
    sources: frozenset[IssueStatus]
    target: IssueStatus
    roles: frozenset[Role]
    needs: tuple[str, ...] = ()
    # Four eyes: the user who submitted the rectification may not check it.
    not_by_rectifier: bool = False


TRANSITIONS: dict[Action, Rule] = {
    Action.ACCEPT: Rule(frozenset({S.REPORTED}), S.ACCEPTED, SUPERVISORS),
    Action.REJECT: Rule(frozenset({S.REPORTED}), S.REJECTED, SUPERVISORS, ("note",)),
    Action.MARK_DUPLICATE: Rule(
        frozenset({S.REPORTED, S.ACCEPTED}), S.DUPLICATE, SUPERVISORS, ("duplicate_of",)
    ),
    Action.DISPATCH: Rule(
        frozenset({S.REPORTED, S.ACCEPTED}), S.DISPATCHED, SUPERVISORS, ("org_unit",)
    ),
    Action.RETURN: Rule(frozenset({S.DISPATCHED}), S.ACCEPTED, RECTIFIERS, ("note",)),
    Action.EXTEND_DEADLINE: Rule(
        frozenset({S.DISPATCHED}), S.DISPATCHED, SUPERVISORS, ("deadline", "note")
    ),
    Action.SUBMIT_RECTIFICATION: Rule(frozenset({S.DISPATCHED}), S.RECTIFIED, RECTIFIERS),
    Action.VERIFY_PASS: Rule(
        frozenset({S.RECTIFIED}), S.CLOSED, SUPERVISORS, not_by_rectifier=True
    ),
    Action.VERIFY_FAIL: Rule(
        frozenset({S.RECTIFIED}), S.DISPATCHED, SUPERVISORS, ("note",), not_by_rectifier=True
    ),
    Action.REOPEN: Rule(frozenset({S.CLOSED}), S.DISPATCHED, SUPERVISORS, ("note",)),
}

TERMINAL = frozenset({S.CLOSED, S.REJECTED, S.DUPLICATE})
# A rectification deadline further out than this is a typing mistake, not a plan.
MAX_DEADLINE_AHEAD = timedelta(days=366)

# Which photos may be added in which status, by whom.
PHOTO_RULES: dict[PhotoKind, tuple[frozenset[IssueStatus], frozenset[Role]]] = {
    PhotoKind.BEFORE: (frozenset(S) - TERMINAL, REPORTERS),
    PhotoKind.AFTER: (frozenset({S.DISPATCHED}), RECTIFIERS),
    PhotoKind.VERIFICATION: (frozenset({S.RECTIFIED}), SUPERVISORS),
}


def is_overdue(issue: Issue | Row[Any], now: datetime) -> bool:
    return (
        issue.status == S.DISPATCHED and issue.deadline_at is not None and now > issue.deadline_at
    )


def allowed_actions(issue: Issue | Row[Any], user: User, in_scope: bool) -> list[str]:
    """The actions this user may take on this issue now, read off TRANSITIONS.

    `in_scope`: the issue's responsible unit is the user's unit or below (permissions.acts_on).
    """
    return [
        action.value
        for action, rule in TRANSITIONS.items()
        if issue.status in rule.sources
        and user.role in rule.roles
        and in_scope
        and not (rule.not_by_rectifier and issue.rectified_by_id == user.id)
    ]


# --- Reading ---------------------------------------------------------------------------------


def get_visible(session: Session, issue_id: int, user: User, *, lock: bool = False) -> Issue:
    """The issue, if the user may see it; NotFound otherwise (no hint that it exists)."""
    query = select(Issue).where(Issue.id == issue_id, visible_issues(session, user))
    issue = session.exec(query.with_for_update() if lock else query).first()
    if issue is None:
        raise NotFound(f"no issue {issue_id}")
    return issue


# --- Reporting -------------------------------------------------------------------------------


@dataclass
class Uploads:
    """The files of one request, by form field: open files, or photos spooled while they
    streamed in."""

    fields: dict[str, list[Upload]]


def report_issue(
    session: Session,
    settings: Settings,
    storage: Storage,
    user: User,
    form: IssueReport,
    uploads: Uploads,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[Issue, bool]:
    """Create an issue with its photos; returns (issue, replayed)."""
    now = now or utcnow()
    if user.role not in REPORTERS:
        raise Forbidden("Only workers and supervisors report issues")
    _check_counts(uploads, settings, required="photos")
    category = session.get(Category, form.category)
    if category is None:
        raise ValidationFailed(f"unknown category {form.category!r}", field="category")
    fields = form.model_dump(mode="json")

    def write(ingested: dict[str, list[IngestedPhoto]]) -> Issue:
        before, after = ingested["photos"], ingested.get("after_photos", [])
        lat, lon, source = _resolve_location(form, before)
        on_the_spot = bool(after)
        change_seq, updated_at = changes.next_change(session, now)
        issue = Issue(
            code=_next_code(session, settings, now),
            category_code=category.code,
            description=form.description,
            status=S.RECTIFIED if on_the_spot else S.REPORTED,
            lat=lat,
            lon=lon,
            accuracy_m=form.accuracy_m,
            location_source=source,
            address=form.address,
            # 属地: the grid cell's unit (app/services/grid.py); the reporter's without a grid.
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
        new_rows = functools.partial(_add_photo_rows, session, settings, issue, user)
        photos = new_rows(PhotoKind.BEFORE, before, form, None, now)
        photos += new_rows(PhotoKind.AFTER, after, form, None, now)
        data = {
            "code": issue.code,
            "category": issue.category_code,
            "lat": issue.lat,
            "lon": issue.lon,
            "location_source": issue.location_source,
            "on_the_spot": on_the_spot,
            "photos": [_photo_ref(p) for p in photos],
        }
        audit.append_event(session, issue, user, "report", now, data=data)
        return issue

    return _create_with_photos(
        session,
        settings,
        storage,
        user,
        uploads,
        fields,
        idempotency_key,
        write,
        to_result=lambda issue: {"issue_id": issue.id},
        from_result=lambda result: get_visible(session, result["issue_id"], user),
    )


def add_photos(
    session: Session,
    settings: Settings,
    storage: Storage,
    user: User,
    issue_id: int,
    form: PhotoForm,
    uploads: Uploads,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[list[Photo], bool]:
    """Add before, after or verification photos to an issue; returns (photos, replayed)."""
    now = now or utcnow()
    issue = get_visible(session, issue_id, user)
    _check_photo_rule(session, issue, user, form.kind)
    _check_counts(uploads, settings, required="files")
    fields = {"issue_id": issue_id, **form.model_dump(mode="json")}

    def write(ingested: dict[str, list[IngestedPhoto]]) -> list[Photo]:
        locked = get_visible(session, issue_id, user, lock=True)
        _check_photo_rule(session, locked, user, form.kind)
        photos = _add_photo_rows(
            session, settings, locked, user, form.kind, ingested["files"], form, form.note, now
        )
        _touch(session, locked, now)
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

    return _create_with_photos(
        session,
        settings,
        storage,
        user,
        uploads,
        fields,
        idempotency_key,
        write,
        to_result=lambda photos: {"photo_ids": [p.id for p in photos]},
        from_result=lambda result: list(
            session.exec(select(Photo).where(col(Photo.id).in_(result["photo_ids"])))
        ),
    )


def _check_photo_rule(session: Session, issue: Issue, user: User, kind: PhotoKind) -> None:
    statuses, roles = PHOTO_RULES[kind]
    if user.role not in roles:
        raise Forbidden(f"{user.role} users may not add {kind} photos")
    if kind != PhotoKind.BEFORE and not acts_on(session, user, issue):
        raise Forbidden(f"only the responsible unit may add {kind} photos")
    if issue.status not in statuses:
        raise PhotoNotAllowed(f"{kind} photos cannot be added to a {issue.status} issue")


def _check_counts(uploads: Uploads, settings: Settings, required: str) -> None:
    limit = settings.max_photos_per_request
    if not uploads.fields.get(required):
        raise ValidationFailed(f"at least one photo is required in {required!r}", field=required)
    for name, files in uploads.fields.items():
        if len(files) > limit:
            raise TooManyFiles(f"{len(files)} files in {name!r}; at most {limit}", max_files=limit)


def _replay(
    session: Session,
    user: User,
    key: str | None,
    fields: dict[str, Any],
    hashes: Callable[[], dict[str, list[str]]],
) -> dict[str, Any] | None:
    """The first result for a retried request; None when the key is new (or absent).
    `hashes` gives the SHA-256 of the request's photos, by field (only a retry needs them)."""
    if key is None:
        return None
    record = idempotency.find(session, user, key)
    if record is None:
        return None
    return idempotency.replay(record, idempotency.fingerprint(fields, hashes()))


T = TypeVar("T")


def _create_with_photos(
    session: Session,
    settings: Settings,
    storage: Storage,
    user: User,
    uploads: Uploads,
    fields: dict[str, Any],
    key: str | None,
    write: Callable[[dict[str, list[IngestedPhoto]]], T],
    to_result: Callable[[T], dict[str, Any]],
    from_result: Callable[[dict[str, Any]], T],
) -> tuple[T, bool]:
    """What the first request with this Idempotency-Key created, or a new write;
    returns (what, replayed). A concurrent retry that commits first is answered as a replay."""
    replayed = _replay(
        session,
        user,
        key,
        fields,
        lambda: {name: [sha256_of(f) for f in files] for name, files in uploads.fields.items()},
    )
    if replayed is not None:
        return from_result(replayed), True
    try:
        return _write_with_photos(
            session, settings, storage, user, uploads, fields, key, write, to_result
        ), False
    except _ConcurrentRetry as retry:
        # The spooled files are stored (or removed) by now: the hashes come from the ingest.
        hashes = retry.hashes
        replayed = _replay(session, user, key, fields, lambda: hashes)
        assert replayed is not None
        return from_result(replayed), True


def _write_with_photos(
    session: Session,
    settings: Settings,
    storage: Storage,
    user: User,
    uploads: Uploads,
    fields: dict[str, Any],
    key: str | None,
    write: Callable[[dict[str, list[IngestedPhoto]]], T],
    result: Callable[[T], dict[str, Any]],
) -> T:
    """Ingest every file, run `write`, commit once; on any failure remove what was stored."""
    ingested: dict[str, list[IngestedPhoto]] = {name: [] for name in uploads.fields}
    # End the transaction of the checks so far: no database lock is held while Pillow works
    # (on SQLite it would be the whole database's write lock). `write` re-reads what it changes.
    session.commit()
    claim = Claim(storage)
    try:
        for name, files in uploads.fields.items():
            for upload in files:
                ingested[name].append(ingest_photo(upload, settings, storage, claim))
        written = write(ingested)
        session.flush()
        if key is not None:
            fingerprint = idempotency.fingerprint(fields, _hashes(ingested))
            idempotency.remember(session, user, key, fingerprint, result(written))
        session.commit()
    except BaseException as exc:
        session.rollback()
        # What this request stored, unless another request in progress or a committed photo
        # uses the same bytes.
        claim.release_and_remove(lambda shas: _used(settings, shas))
        if (
            key is not None
            and isinstance(exc, IntegrityError)
            and idempotency.find(session, user, key)
        ):
            # A concurrent retry with the same key committed first: answer as a replay would.
            raise _ConcurrentRetry(_hashes(ingested)) from exc
        raise
    claim.release()
    return written


def _hashes(ingested: dict[str, list[IngestedPhoto]]) -> dict[str, list[str]]:
    return {name: [p.sha256 for p in photos] for name, photos in ingested.items()}


class _ConcurrentRetry(Exception):
    def __init__(self, hashes: dict[str, list[str]]) -> None:
        super().__init__()
        self.hashes = hashes


def _used(settings: Settings, shas: set[str]) -> set[str]:
    """Those of the SHA-256s that committed photos use. Read on the engine of reads: a fresh
    snapshot that on SQLite waits for no writer (it runs under the claims' lock)."""
    with Session(get_read_engine(settings.database_url)) as reader:
        return set(reader.exec(select(Photo.sha256).where(col(Photo.sha256).in_(shas))))


def _resolve_location(
    form: LocationForm, before: list[IngestedPhoto]
) -> tuple[float, float, LocationSource]:
    """The form's position, else the first before-photo's EXIF GPS, else location_required."""
    if form.lat is not None and form.lon is not None:
        lat, lon = to_wgs84(form.lat, form.lon, form.crs)
        return lat, lon, _form_source(form)
    if (form.lat is None) != (form.lon is None):
        raise ValidationFailed("send both lat and lon, or neither", field="lat")
    gps = before[0].exif.gps if before else None
    if gps is None:
        raise LocationRequired(
            "No location: allow the phone's location, or send a photo with GPS in its EXIF"
        )
    return gps[0], gps[1], LocationSource.EXIF


def _form_source(form: LocationForm) -> LocationSource:
    if form.location_source is not None:
        return form.location_source
    return LocationSource.DEVICE if form.accuracy_m is not None else LocationSource.MANUAL


def _add_photo_rows(
    session: Session,
    settings: Settings,
    issue: Issue,
    user: User,
    kind: PhotoKind,
    ingested: list[IngestedPhoto],
    form: LocationForm,
    note: str | None,
    now: datetime,
) -> list[Photo]:
    """Photo rows with their checks, each flushed so that the next one is compared with it."""
    if not ingested:
        return []
    device = (
        to_wgs84(form.lat, form.lon, form.crs)
        if form.lat is not None and form.lon is not None
        else (None, None)
    )
    context = checks.UploadContext(issue, kind, device[0], device[1], form.accuracy_m, now)
    if kind != PhotoKind.BEFORE:
        context.earliest_before_at = checks.earliest_before_capture(session, settings, _id(issue))
    rows = []
    for photo in ingested:
        lat, lon, source = _photo_location(photo, form)
        flags = checks.photo_flags(session, settings, photo, (lat, lon), context)
        bands = checks.phash_bands(photo.phash)
        row = Photo(
            issue_id=_id(issue),
            kind=kind,
            sha256=photo.sha256,
            content_type=photo.content_type,
            bytes=photo.bytes,
            width=photo.width,
            height=photo.height,
            taken_at=photo.exif.taken_at,
            uploaded_at=now,
            uploaded_by_id=_id(user),
            exif=photo.exif.public(),
            lat=lat,
            lon=lon,
            accuracy_m=form.accuracy_m if source != LocationSource.EXIF else None,
            location_source=source,
            flags=flags,
            phash=photo.phash,
            phash_b0=bands[0],
            phash_b1=bands[1],
            phash_b2=bands[2],
            note=note,
            dispatch_round=issue.dispatch_round,
        )
        session.add(row)
        session.flush()
        rows.append(row)
    return rows


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


def _photo_ref(photo: Photo) -> dict[str, Any]:
    return {"id": photo.id, "kind": photo.kind, "sha256": photo.sha256}


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


def _touch(session: Session, issue: Issue, now: datetime) -> None:
    """A new version of the issue, numbered by the change counter (see services/changes.py)."""
    issue.version += 1
    issue.change_seq, issue.updated_at = changes.next_change(session, max(now, issue.updated_at))


def _id(row: Issue | User) -> int:
    assert row.id is not None
    return row.id


# --- The state machine -----------------------------------------------------------------------


def parse_if_match(header: str | None) -> int:
    if header is None:
        raise PreconditionRequired()
    text = header.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise VersionConflict(f"If-Match {header!r} is not a version of this issue")
    return int(text)


def apply_transition(
    session: Session,
    settings: Settings,
    user: User,
    issue_id: int,
    request: TransitionRequest,
    if_match: str | None,
    now: datetime | None = None,
) -> Issue:
    """Check and apply one action of TRANSITIONS; stamps the time, writes the event, commits."""
    now = now or utcnow()
    expected_version = parse_if_match(if_match)
    try:
        action = Action(request.action)
    except ValueError:
        raise ValidationFailed(
            f"unknown action {request.action!r}; one of {', '.join(Action)}", field="action"
        ) from None
    issue = get_visible(session, issue_id, user, lock=True)
    if issue.version != expected_version:
        raise VersionConflict(
            f"the issue is at version {issue.version}, not {expected_version}; reload it",
            current_version=issue.version,
        )
    rule = TRANSITIONS[action]
    if issue.status not in rule.sources:
        raise InvalidTransition(
            f"{action} is not possible from {issue.status}",
            allowed_from=sorted(rule.sources),
        )
    _check_actor(session, issue, user, action, rule)
    missing = [name for name in rule.needs if getattr(request, name) in (None, "")]
    if missing:
        raise ValidationFailed(f"{action} needs {', '.join(missing)}", missing=missing)
    from_status = issue.status
    data = EFFECTS[action](session, settings, issue, user, request, now)
    issue.status = rule.target
    _touch(session, issue, now)
    audit.append_event(
        session, issue, user, action, now, from_status=from_status, note=request.note, data=data
    )
    session.commit()
    return issue


def _check_actor(session: Session, issue: Issue, user: User, action: Action, rule: Rule) -> None:
    if user.role not in rule.roles:
        raise Forbidden(f"a {user.role} may not {action}")
    if not acts_on(session, user, issue):
        raise Forbidden(f"only the responsible unit or above may {action} this issue")
    if rule.not_by_rectifier and issue.rectified_by_id == user.id:
        raise Forbidden("the rectification must be checked by someone other than who submitted it")


def _deadline(request: TransitionRequest, settings: Settings, now: datetime) -> datetime | None:
    deadline = request.deadline
    if deadline is None:
        return None
    deadline = as_aware(deadline, settings.zone)
    if deadline <= now:
        raise ValidationFailed("the deadline must be in the future", field="deadline")
    if deadline > now + MAX_DEADLINE_AHEAD:
        raise ValidationFailed("the deadline must be within a year", field="deadline")
    return deadline


Effect = Callable[[Session, Settings, Issue, User, TransitionRequest, datetime], dict[str, Any]]


def _accept(
    _s: Session, _c: Settings, issue: Issue, _u: User, _r: TransitionRequest, now: datetime
) -> dict[str, Any]:
    issue.accepted_at = now
    return {}


def _no_effect(*_args: Any) -> dict[str, Any]:
    return {}


def _mark_duplicate(
    session: Session,
    _c: Settings,
    issue: Issue,
    user: User,
    request: TransitionRequest,
    _now: datetime,
) -> dict[str, Any]:
    assert request.duplicate_of is not None
    if request.duplicate_of == issue.id:
        raise ValidationFailed("an issue cannot duplicate itself", field="duplicate_of")
    try:
        original = get_visible(session, request.duplicate_of, user)
    except NotFound:
        raise ValidationFailed(
            f"no issue {request.duplicate_of} to be a duplicate of", field="duplicate_of"
        ) from None
    issue.duplicate_of_id = original.id
    return {"duplicate_of": original.id}


def _enter_dispatched(issue: Issue, deadline: datetime, now: datetime) -> None:
    issue.dispatched_at = now
    issue.deadline_at = deadline
    issue.dispatch_round += 1
    issue.rectified_at = None


def _default_deadline(session: Session, issue: Issue, now: datetime) -> datetime:
    category = session.get(Category, issue.category_code)
    assert category is not None
    return now + timedelta(hours=category.deadline_hours)


def _dispatch(
    session: Session,
    settings: Settings,
    issue: Issue,
    user: User,
    request: TransitionRequest,
    now: datetime,
) -> dict[str, Any]:
    assert request.org_unit is not None
    target = session.exec(select(OrgUnit).where(OrgUnit.code == request.org_unit)).first()
    if target is None:
        raise ValidationFailed(f"no org unit with code {request.org_unit!r}", field="org_unit")
    mine = session.get(OrgUnit, user.org_unit_id)
    assert mine is not None
    if not orgs.is_within(target, mine):
        raise Forbidden(f"{request.org_unit} is outside your unit")
    deadline = _deadline(request, settings, now) or _default_deadline(session, issue, now)
    issue.org_unit_id = _id_of(target)
    _enter_dispatched(issue, deadline, now)
    return {"org_unit": target.code, "deadline": audit.canonical_at(deadline)}


def _extend_deadline(
    _s: Session,
    settings: Settings,
    issue: Issue,
    _u: User,
    request: TransitionRequest,
    now: datetime,
) -> dict[str, Any]:
    deadline = _deadline(request, settings, now)
    assert deadline is not None
    if issue.deadline_at is not None and deadline <= issue.deadline_at:
        raise ValidationFailed(
            "the new deadline must be later than the current one", field="deadline"
        )
    previous = issue.deadline_at
    issue.deadline_at = deadline
    return {
        "deadline": audit.canonical_at(deadline),
        "previous_deadline": audit.canonical_at(previous) if previous else None,
    }


def _submit_rectification(
    session: Session, _c: Settings, issue: Issue, user: User, _r: TransitionRequest, now: datetime
) -> dict[str, Any]:
    after = session.exec(
        select(Photo.id).where(
            Photo.issue_id == issue.id,
            Photo.kind == PhotoKind.AFTER,
            Photo.dispatch_round == issue.dispatch_round,
        )
    ).all()
    if not after:
        raise AfterPhotoRequired()
    issue.rectified_at = now
    issue.rectified_by_id = user.id
    return {"after_photos": list(after)}


def _verify_pass(
    session: Session,
    _c: Settings,
    issue: Issue,
    user: User,
    request: TransitionRequest,
    now: datetime,
) -> dict[str, Any]:
    after = session.exec(
        select(Photo.flags).where(
            Photo.issue_id == issue.id,
            Photo.kind == PhotoKind.AFTER,
            Photo.dispatch_round == issue.dispatch_round,
        )
    )
    serious = sorted({flag for flags in after for flag in flags} & checks.NEEDS_OVERRIDE_NOTE)
    if serious and not request.note:
        raise OverrideNoteRequired(
            f"the after-photos are flagged {', '.join(serious)}: say in a note why they pass",
            flags=serious,
        )
    issue.closed_at = now
    issue.verified_by_id = user.id
    return {"override_flags": serious} if serious else {}


def _verify_fail(
    session: Session, _c: Settings, issue: Issue, user: User, _r: TransitionRequest, now: datetime
) -> dict[str, Any]:
    issue.rework_count += 1
    issue.verified_by_id = user.id
    # Rework keeps the deadline it had: a failed check does not buy more time.
    _enter_dispatched(issue, issue.deadline_at or _default_deadline(session, issue, now), now)
    return {"rework_count": issue.rework_count}


def _reopen(
    session: Session,
    settings: Settings,
    issue: Issue,
    _u: User,
    request: TransitionRequest,
    now: datetime,
) -> dict[str, Any]:
    deadline = _deadline(request, settings, now) or _default_deadline(session, issue, now)
    issue.closed_at = None
    _enter_dispatched(issue, deadline, now)
    return {"deadline": audit.canonical_at(deadline)}


def _id_of(org: OrgUnit) -> int:
    assert org.id is not None
    return org.id


EFFECTS: dict[Action, Effect] = {
    Action.ACCEPT: _accept,
    Action.REJECT: _no_effect,
    Action.MARK_DUPLICATE: _mark_duplicate,
    Action.DISPATCH: _dispatch,
    Action.RETURN: _no_effect,
    Action.EXTEND_DEADLINE: _extend_deadline,
    Action.SUBMIT_RECTIFICATION: _submit_rectification,
    Action.VERIFY_PASS: _verify_pass,
    Action.VERIFY_FAIL: _verify_fail,
    Action.REOPEN: _reopen,
}
assert set(EFFECTS) == set(TRANSITIONS)
