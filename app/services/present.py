"""Rows → the public API shapes, loading related rows in batches (no query per row)."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Row, bindparam, func
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as select_columns
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.models import Category, Issue, IssueEvent, OrgUnit, Photo, User
from app.models.event import IssueEventPublic
from app.models.geo import Crs
from app.models.issue import IssuePublic, is_overdue
from app.models.photo import PhotoKind, PhotoPublic, exif_answer
from app.models.user import Role, UserPublic
from app.services import orgs
from app.services.audit import canonical_at
from app.services.flag_text import describe, facts_of
from app.services.geo import from_wgs84
from app.services.issues import allowed_actions
from app.services.permissions import user_org
from app.services.rows import named_rows
from app.services.signing import PhotoLinks
from app.services.wayfinding import address_hint, navigation


def photos_public(
    session: Session,
    photos: Sequence[Photo],
    crs: Crs = Crs.WGS84,
    *,
    links: PhotoLinks | None,
    english: bool = False,
) -> list[PhotoPublic]:
    """The photos' answers, in their order (read again as rows with their uploaders' names);
    without `links`, the signed URLs are null (records kept, such as the evidence)."""
    found = session.connection().execute(_PHOTOS_BY_ID, {"ids": [p.id for p in photos]})
    rows = {row.id: row for row in found}
    answers = [_photo(rows[p.id], crs, english, links) for p in photos]
    return _PHOTOS_PUBLIC.validate_python(answers)


def _point(lat: float, lon: float, crs: Crs) -> tuple[float, float]:
    """A stored WGS-84 point in the asked coordinate system, rounded to about 1 cm."""
    lat, lon = from_wgs84(lat, lon, crs)
    return round(lat, 7), round(lon, 7)


def flag_notes(photo: Row[Any] | Photo, issue_at: tuple[float, float], english: bool) -> Any:
    """The photo's flags as the sentences a person reads (app/services/flag_text.py)."""
    if not photo.flags:
        return []
    return describe(photo.flags, facts_of(photo, *issue_at), english=english)


def _photo(photo: Row[Any], crs: Crs, english: bool, links: PhotoLinks | None) -> dict[str, Any]:
    """A photo's answer as a dict in PhotoPublic's JSON shape (see issue_answers)."""
    base = f"/api/v1/photos/{photo.id}"
    lat, lon = (photo.lat, photo.lon)
    if lat is not None and lon is not None:
        lat, lon = _point(lat, lon, crs)
    return {
        "id": photo.id,
        "issue_id": photo.issue_id,
        "kind": photo.kind,
        "sha256": photo.sha256,
        "content_type": photo.content_type,
        "bytes": photo.bytes,
        "width": photo.width,
        "height": photo.height,
        "taken_at": photo.taken_at,
        "uploaded_at": photo.uploaded_at,
        "uploaded_by": photo.uploaded_by,
        "exif": exif_answer(photo.exif),
        "lat": lat,
        "lon": lon,
        "location_source": photo.location_source,
        "flags": photo.flags,
        "flag_notes": flag_notes(photo, (photo.issue_lat, photo.issue_lon), english),
        "note": photo.note,
        "dispatch_round": photo.dispatch_round,
        "urls": {
            "thumb": f"{base}/thumb",
            "large": f"{base}/large",
            "original": f"{base}/original",
            "thumb_signed": links.url(photo.id, "thumb") if links else None,
            "large_signed": links.url(photo.id, "large") if links else None,
        },
    }


# Answers are built as dicts and validated a page at a time, in pydantic-core: one call for
# 50 issues and their photos instead of ~500 model constructors (a third of the time). The list
# page sends the dicts as they are (issue_answers).
_PHOTOS_PUBLIC = TypeAdapter(list[PhotoPublic])
_ISSUES_PUBLIC = TypeAdapter(list[IssuePublic])


# The photo columns an answer shows, read as plain rows with the uploader's name: a page of 50
# issues has ~150 photos, and loading them as ORM objects cost more than the query (the pHash
# bands are for the similarity index only).
_PHOTO_COLUMNS = [
    *(column for column in sa_inspect(Photo).columns if not column.name.startswith("phash_b")),
    col(User.username).label("uploaded_by"),
    col(Issue.lat).label("issue_lat"),
    col(Issue.lon).label("issue_lon"),
]


@dataclass(frozen=True)
class _Context:
    """What an issue's answer shows besides its own row, read for a whole page in one query."""

    org_unit: str
    org_path: str
    quantity_unit: str
    reported_by: str
    rectified_by: str | None
    verified_by: str | None
    extension_requested_by: str | None


def _context_query() -> Any:
    reporter, rectifier, verifier = aliased(User), aliased(User), aliased(User)
    requester = aliased(User)
    return (
        select_columns(
            col(Issue.id),
            col(OrgUnit.code),
            col(OrgUnit.path),
            col(Category.unit),
            col(reporter.username),
            col(rectifier.username),
            col(verifier.username),
            col(requester.username),
        )
        .join(OrgUnit, col(OrgUnit.id) == col(Issue.org_unit_id))
        .join(Category, col(Category.code) == col(Issue.category_code))
        .join(reporter, col(reporter.id) == col(Issue.reported_by_id))
        .outerjoin(rectifier, col(rectifier.id) == col(Issue.rectified_by_id))
        .outerjoin(verifier, col(verifier.id) == col(Issue.verified_by_id))
        .outerjoin(requester, col(requester.id) == col(Issue.extension_requested_by_id))
        .where(col(Issue.id).in_(bindparam("ids", expanding=True)))
    )


# Built once (building a statement costs more than running these). The contexts stay a query
# of their own: read by the list's query instead, as scalar subqueries PostgreSQL scanned the
# users per row and name (2.65 ms against 0.47 + 0.4 for the two), and as outer joins it
# planned them in 4.2 ms (README, Benchmarks).
_CONTEXTS = _context_query()
_PHOTO_ROWS = (
    select_columns(*_PHOTO_COLUMNS)
    .join(User, col(User.id) == col(Photo.uploaded_by_id))
    .join(Issue, col(Issue.id) == col(Photo.issue_id))
)
_PAGE_IDS: Any = bindparam("ids", expanding=True)
# The issues' ids twice (the join already implies the second): PostgreSQL then reads those
# issues by key for their position; with the photos' condition alone it hashed the whole
# issues table (1.8 of the query's 2.7 ms at 10,000 issues).
_PHOTOS_OF_ISSUES = _PHOTO_ROWS.where(
    col(Photo.issue_id).in_(_PAGE_IDS), col(Issue.id).in_(_PAGE_IDS)
).order_by(col(Photo.id))
_PHOTOS_BY_ID = _PHOTO_ROWS.where(col(Photo.id).in_(bindparam("ids", expanding=True)))


def issues_public(
    session: Session,
    issues: Sequence[Issue | Row[Any]],
    viewer: User,
    now: datetime,
    crs: Crs = Crs.WGS84,
    *,
    links: PhotoLinks | None,
    english: bool = False,
) -> list[IssuePublic]:
    """The issues' answers; photo flags worded in Chinese, or in English when asked."""
    answers = issue_answers(session, issues, viewer, now, crs, links=links, english=english)
    return _ISSUES_PUBLIC.validate_python(answers)


def issue_answers(
    session: Session,
    issues: Sequence[Issue | Row[Any]],
    viewer: User,
    now: datetime,
    crs: Crs = Crs.WGS84,
    *,
    links: PhotoLinks | None,
    english: bool = False,
) -> list[dict[str, Any]]:
    """The issues' answers as dicts already in IssuePublic's JSON shape (its fields in order,
    values as it writes them), for a page sent without validating it (responses.answer_json:
    2 ms of a page; tests/routers/test_list_json.py pins the bytes to the validated model's)."""
    ids = [i.id or 0 for i in issues]
    connection = session.connection()
    photos_by_issue: dict[int, list[Row[Any]]] = defaultdict(list)
    for photo in named_rows(connection.execute(_PHOTOS_OF_ISSUES, {"ids": ids})):
        photos_by_issue[photo.issue_id].append(photo)
    contexts = {
        row[0]: _Context(*row[1:]) for row in connection.execute(_CONTEXTS, {"ids": ids}).all()
    }
    viewer_path = user_org(session, viewer).path
    answers: list[dict[str, Any]] = []
    for issue in issues:
        context = contexts[issue.id]
        within = orgs.path_within(context.org_path, viewer_path)
        photos = photos_by_issue[issue.id or 0]
        after_by = {
            p.uploaded_by_id
            for p in photos
            if p.kind == PhotoKind.AFTER and p.dispatch_round == issue.dispatch_round
        }
        actions = allowed_actions(issue, viewer, within, after_by)
        answers.append(_issue(issue, photos, context, now, crs, actions, english, links))
    return answers


def _issue(
    i: Issue | Row[Any],
    photos: list[Row[Any]],
    context: _Context,
    now: datetime,
    crs: Crs,
    actions: list[str],
    english: bool,
    links: PhotoLinks | None,
) -> dict[str, Any]:
    lat, lon = _point(i.lat, i.lon, crs)
    return {
        "id": i.id,
        "code": i.code,
        "category": i.category_code,
        "description": i.description,
        "status": i.status,
        "lat": lat,
        "lon": lon,
        "accuracy_m": i.accuracy_m,
        "location_source": i.location_source,
        "address": i.address,
        "org_unit": context.org_unit,
        "reported_by": context.reported_by,
        "reported_at": i.reported_at,
        "accepted_at": i.accepted_at,
        "dispatched_at": i.dispatched_at,
        "deadline": i.deadline_at,
        "rectified_at": i.rectified_at,
        "rectified_by": context.rectified_by,
        "closed_at": i.closed_at,
        "verified_by": context.verified_by,
        "overdue": is_overdue(i, now),
        "rework_count": i.rework_count,
        "dispatch_round": i.dispatch_round,
        "quantity": i.quantity,
        "quantity_unit": context.quantity_unit,
        "rectified_quantity": i.rectified_quantity,
        "duplicate_of": i.duplicate_of_id,
        "extension_request": _extension_request(i, context),
        "version": i.version,
        "updated_at": i.updated_at,
        "photos": [_photo(p, crs, english, links) for p in photos],
        "source": i.source,
        "flags": sorted({flag for p in photos for flag in p.flags}),
        "allowed_actions": actions,
        "crs": crs.value,
        "grid_cell": (
            {"code": i.grid_cell_code, "name": i.grid_cell_name} if i.grid_cell_code else None
        ),
        "outside_grid": i.outside_grid,
        "navigation": navigation(i.lat, i.lon, i.code),
        "address_hint": address_hint(i, english=english),
    }


def _extension_request(i: Issue | Row[Any], context: _Context) -> dict[str, Any] | None:
    if i.extension_deadline_at is None:
        return None
    return {
        "deadline": i.extension_deadline_at,
        "note": i.extension_note or "",
        "requested_by": context.extension_requested_by,
        "requested_at": i.extension_requested_at,
    }


def issue_public(
    session: Session,
    issue: Issue,
    viewer: User,
    now: datetime,
    crs: Crs = Crs.WGS84,
    *,
    links: PhotoLinks | None,
    english: bool = False,
) -> IssuePublic:
    return issues_public(session, [issue], viewer, now, crs, links=links, english=english)[0]


def events_public(events: Sequence[IssueEvent]) -> list[IssueEventPublic]:
    return [
        IssueEventPublic(
            seq=e.seq,
            at=canonical_at(e.at),
            actor=e.actor,
            action=e.action,
            from_status=e.from_status,
            to_status=e.to_status,
            note=e.note,
            data=e.data,
            prev_hash=e.prev_hash,
            hash=e.hash,
        )
        for e in events
    ]


def user_public(session: Session, user: User) -> UserPublic:
    org = session.get(OrgUnit, user.org_unit_id)
    assert org is not None and user.id is not None
    return UserPublic(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        org_unit=org.code,
    )


def feature_collection(
    session: Session, issues: Sequence[Issue | Row[Any]], now: datetime, crs: Crs = Crs.WGS84
) -> dict[str, Any]:
    """RFC 7946 FeatureCollection with properties small enough for a map."""
    first_photo: dict[int, int] = {}
    ids = [i.id for i in issues]
    query = select(Photo.issue_id, func.min(Photo.id)).where(col(Photo.issue_id).in_(ids))
    for issue_id, photo_id in session.exec(query.group_by(col(Photo.issue_id))):
        if photo_id is not None:
            first_photo[issue_id] = photo_id
    features = []
    for i in issues:
        lat, lon = _point(i.lat, i.lon, crs)
        photo_id = first_photo.get(i.id or 0)
        features.append(
            {
                "type": "Feature",
                "id": i.id,
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {
                    "id": i.id,
                    "code": i.code,
                    "category": i.category_code,
                    "status": i.status,
                    "overdue": is_overdue(i, now),
                    "outside_grid": i.outside_grid,
                    "thumb": f"/api/v1/photos/{photo_id}/thumb" if photo_id else None,
                },
            }
        )
    # RFC 7946 has no `crs` member; gcj02/bd09 (for Chinese base maps) is named in a foreign one.
    return {"type": "FeatureCollection", "coordinate_system": crs.value, "features": features}
