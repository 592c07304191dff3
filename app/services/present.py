"""Rows → the public API shapes, loading related rows in batches (no query per row)."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from app.models import Category, Issue, IssueEvent, OrgUnit, Photo, User
from app.models.event import IssueEventPublic
from app.models.issue import IssuePublic, IssueStatus, LocationSource
from app.models.photo import PhotoExif, PhotoKind, PhotoPublic, PhotoUrls
from app.models.user import Role, UserPublic
from app.services.audit import canonical_at
from app.services.issues import allowed_actions, is_overdue


def _usernames(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.exec(select(User.id, User.username).where(col(User.id).in_(wanted)))
    return {user_id: name for user_id, name in rows if user_id is not None}


def photos_public(session: Session, photos: Sequence[Photo]) -> list[PhotoPublic]:
    names = _usernames(session, {p.uploaded_by_id for p in photos})
    return [_photo(p, names) for p in photos]


def _photo(photo: Photo, names: dict[int, str]) -> PhotoPublic:
    base = f"/api/v1/photos/{photo.id}"
    return PhotoPublic(
        id=photo.id or 0,
        issue_id=photo.issue_id,
        kind=PhotoKind(photo.kind),
        sha256=photo.sha256,
        content_type=photo.content_type,
        bytes=photo.bytes,
        width=photo.width,
        height=photo.height,
        taken_at=photo.taken_at,
        uploaded_at=photo.uploaded_at,
        uploaded_by=names.get(photo.uploaded_by_id, ""),
        exif=PhotoExif(**photo.exif),
        lat=photo.lat,
        lon=photo.lon,
        location_source=photo.location_source,
        flags=photo.flags,
        note=photo.note,
        urls=PhotoUrls(thumb=f"{base}/thumb", large=f"{base}/large", original=f"{base}/original"),
    )


def issues_public(
    session: Session, issues: Sequence[Issue], viewer: User, now: datetime
) -> list[IssuePublic]:
    ids = [i.id for i in issues]
    photos_by_issue: dict[int, list[Photo]] = defaultdict(list)
    photos = session.exec(select(Photo).where(col(Photo.issue_id).in_(ids)).order_by(col(Photo.id)))
    for photo in photos:
        photos_by_issue[photo.issue_id].append(photo)
    people = {i.reported_by_id for i in issues} | {i.rectified_by_id for i in issues}
    people |= {i.verified_by_id for i in issues}
    people |= {p.uploaded_by_id for ps in photos_by_issue.values() for p in ps}
    names = _usernames(session, people)
    org_codes = dict(session.exec(select(OrgUnit.id, OrgUnit.code)).all())
    units = dict(session.exec(select(Category.code, Category.unit)).all())
    return [
        IssuePublic(
            id=i.id or 0,
            code=i.code,
            category=i.category_code,
            description=i.description,
            status=IssueStatus(i.status),
            lat=i.lat,
            lon=i.lon,
            accuracy_m=i.accuracy_m,
            location_source=LocationSource(i.location_source),
            address=i.address,
            org_unit=org_codes[i.org_unit_id],
            reported_by=names.get(i.reported_by_id, ""),
            reported_at=i.reported_at,
            accepted_at=i.accepted_at,
            dispatched_at=i.dispatched_at,
            deadline=i.deadline_at,
            rectified_at=i.rectified_at,
            rectified_by=names.get(i.rectified_by_id) if i.rectified_by_id else None,
            closed_at=i.closed_at,
            verified_by=names.get(i.verified_by_id) if i.verified_by_id else None,
            overdue=is_overdue(i, now),
            rework_count=i.rework_count,
            quantity=i.quantity,
            quantity_unit=units[i.category_code],
            duplicate_of=i.duplicate_of_id,
            version=i.version,
            updated_at=i.updated_at,
            photos=[_photo(p, names) for p in photos_by_issue[i.id or 0]],
            allowed_actions=allowed_actions(session, i, viewer),
        )
        for i in issues
    ]


def issue_public(session: Session, issue: Issue, viewer: User, now: datetime) -> IssuePublic:
    return issues_public(session, [issue], viewer, now)[0]


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
