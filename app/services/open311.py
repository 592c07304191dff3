"""Open311 GeoReport v2: a face over the issue services (no rule of its own).

Services are the categories; a service request is an issue, its `service_request_id` the
issue's code, its `token` the issue's id. Reports go through the same `report_issue` as the
JSON API. Answers are plain structures in the spec's element order (open311_render.py).
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed
from app.models import Category, Issue, IssueContact, IssueEvent, OrgUnit, Photo, Role, User
from app.models.base import Text, as_aware
from app.models.issue import IssueReport, IssueStatus
from app.services import auth, geocode, reporting, signing
from app.services.permissions import visible_issues
from app.services.photos import Upload
from app.services.storage import Storage

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-12-06T00:00:00+08:00"
MAX_RANGE = timedelta(days=90)
MAX_PAGE_SIZE = 200
CLOSED = frozenset({IssueStatus.CLOSED, IssueStatus.REJECTED, IssueStatus.DUPLICATE})
# Notes said to the outside (status_notes): why an issue was refused, closed, dispatched or
# given more time; not the internal back-and-forth of a returned dispatch or a failed check.
PUBLIC_NOTE_ACTIONS = ("reject", "mark_duplicate", "dispatch", "extend_deadline", "verify_pass")


class Open311Form(BaseModel):
    """POST requests: the spec's form fields (unknown ones are ignored, as the spec wants)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_key: str | None = None
    jurisdiction_id: str | None = None
    service_code: Text = PydanticField(min_length=1, max_length=40)
    lat: float | None = PydanticField(default=None, ge=-90, le=90, allow_inf_nan=False)
    long: float | None = PydanticField(default=None, ge=-180, le=180, allow_inf_nan=False)
    address_string: Text | None = PydanticField(default=None, max_length=300)
    address_id: Text | None = PydanticField(default=None, max_length=100)
    description: Text = PydanticField(default="", max_length=4000)
    media_url: Text | None = PydanticField(default=None, max_length=2000)
    email: Text | None = PydanticField(default=None, max_length=200)
    first_name: Text | None = PydanticField(default=None, max_length=100)
    last_name: Text | None = PydanticField(default=None, max_length=100)
    phone: Text | None = PydanticField(default=None, max_length=40)
    device_id: Text | None = PydanticField(default=None, max_length=100)
    account_id: Text | None = PydanticField(default=None, max_length=100)
    quantity: float | None = PydanticField(
        default=None, alias="attribute[quantity]", ge=0, le=1e9, allow_inf_nan=False
    )


class Open311Report(IssueReport):
    """The issue form with the spec's longer description (the JSON API keeps 2000)."""

    description: Text = PydanticField(default="", max_length=4000)


@dataclass
class RequestQuery:
    service_request_id: str | None = None
    service_code: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    status: str | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    page: int = 1
    page_size: int = 50
    extensions: bool = False


def caller(session: Session, api_key: str | None) -> User:
    """The external system whose api_key this is; Forbidden for anything else."""
    if not api_key:
        raise Forbidden("缺少 api_key")
    try:
        user = auth.user_for_token(session, api_key).user
    except Unauthenticated:
        raise Forbidden("api_key 无效") from None
    if user.role != Role.EXTERNAL:
        raise Forbidden("api_key 不是外部系统（external）的密钥")
    return user


# --- Discovery and services ----------------------------------------------------------------


def discovery(base_url: str) -> dict[str, Any]:
    return {
        "changeset": CHANGESET,
        "contact": "经开区城市管理指挥中心",
        "key_service": "api_key：gridproof user add 名称 --role external --org 单位代码",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": f"{base_url}/open311/v2",
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


def _service(category: Category) -> dict[str, Any]:
    hours = category.deadline_hours
    return {
        "service_code": category.code,
        "service_name": category.name,
        "description": f"{category.name}（{category.name_en}），处置时限 {hours} 小时",
        "metadata": True,
        "type": "realtime",
        "keywords": f"{category.name}, {category.name_en}",
        "group": category.group,
    }


def services(session: Session) -> list[dict[str, Any]]:
    return [_service(c) for c in session.exec(select(Category).order_by(col(Category.code)))]


def service_definition(session: Session, code: str) -> dict[str, Any]:
    category = session.get(Category, code)
    if category is None:
        raise NotFound(f"没有服务 {code!r}")
    quantity = {
        "variable": True,
        "code": "quantity",
        "datatype": "number",
        "required": False,
        "datatype_description": f"数量，单位：{category.unit}",
        "order": 1,
        "description": f"数量（{category.unit}）",
    }
    return {"service_code": category.code, "attributes": [quantity]}


# --- Creating a request --------------------------------------------------------------------


def create_request(
    session: Session,
    settings: Settings,
    storage: Storage,
    user: User,
    form: Open311Form,
    media: list[Upload],
) -> Issue:
    """Report an issue for an external system, through the JSON API's own report_issue."""
    if session.get(Category, form.service_code) is None:
        raise ValidationFailed(f"没有服务 {form.service_code!r}", field="service_code")
    lat, lon = form.lat, form.long
    if (lat is None or lon is None) and not media:
        if not form.address_string:
            raise ValidationFailed(
                "缺少位置：请提供 lat 和 long、address_string（或带 GPS 的照片 media）", field="lat"
            )
        place = geocode.locate(session, user, form.address_string)
        lat, lon = place.lat, place.lon
    report = Open311Report(
        category=form.service_code,
        description=form.description,
        lat=lat,
        lon=lon,
        address=form.address_string,
        quantity=form.quantity,
    )

    def mark(issue: Issue) -> None:
        assert issue.id is not None and user.id is not None
        issue.source = user.username
        session.add(
            IssueContact(
                issue_id=issue.id,
                sent_by_id=user.id,
                email=form.email,
                first_name=form.first_name,
                last_name=form.last_name,
                phone=form.phone,
                media_url=form.media_url,
            )
        )

    uploads = reporting.Uploads({"photos": media})
    caller = reporting.Caller(session, settings, storage, user)
    issue, _replayed = reporting.report_issue(caller, report, uploads, on_write=mark)
    return issue


def created(issue: Issue) -> list[dict[str, Any]]:
    notice = "已受理，将按类别处置时限派遣处置"
    return [
        {
            "service_request_id": issue.code,
            "token": str(issue.id),
            "service_notice": notice,
            "account_id": None,
        }
    ]


# --- Reading requests ----------------------------------------------------------------------


def _dates(query: RequestQuery, settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    zone = settings.zone
    end = as_aware(query.end_date, zone) if query.end_date else None
    start = as_aware(query.start_date, zone) if query.start_date else None
    if start is None:
        start = (end or now) - MAX_RANGE
    end = end or max(now, start)
    if end < start:
        raise ValidationFailed("end_date 早于 start_date", field="end_date")
    if end - start > MAX_RANGE:
        raise ValidationFailed("start_date 与 end_date 相距不得超过 90 天", field="start_date")
    return start, end


def find_requests(
    session: Session, settings: Settings, user: User, query: RequestQuery, now: datetime
) -> list[Issue]:
    """The issues the caller may see that match the spec's filters, newest first."""
    statement = select(Issue).where(visible_issues(session, user))
    if query.service_request_id:
        codes = [c.strip() for c in query.service_request_id.split(",") if c.strip()]
        statement = statement.where(col(Issue.code).in_(codes[:MAX_PAGE_SIZE]))
    else:
        statement = _filtered(statement, settings, query, now)
    offset = (query.page - 1) * query.page_size
    ordered = statement.order_by(col(Issue.reported_at).desc(), col(Issue.id).desc())
    return list(session.exec(ordered.offset(offset).limit(query.page_size)))


def _filtered(statement: Any, settings: Settings, query: RequestQuery, now: datetime) -> Any:
    start, end = _dates(query, settings, now)
    statement = statement.where(col(Issue.reported_at).between(start, end))
    if query.service_code:
        codes = [c.strip() for c in query.service_code.split(",") if c.strip()]
        statement = statement.where(col(Issue.category_code).in_(codes))
    if query.status:
        wanted = {s.strip().lower() for s in query.status.split(",")}
        if not wanted <= {"open", "closed"}:
            raise ValidationFailed("status 只能是 open 或 closed", field="status")
        if wanted == {"open"}:
            statement = statement.where(col(Issue.status).not_in(CLOSED))
        elif wanted == {"closed"}:
            statement = statement.where(col(Issue.status).in_(CLOSED))
    zone = settings.zone
    if query.updated_after:
        statement = statement.where(col(Issue.updated_at) > as_aware(query.updated_after, zone))
    if query.updated_before:
        statement = statement.where(col(Issue.updated_at) < as_aware(query.updated_before, zone))
    return statement


def request_by_id(session: Session, user: User, request_id: str) -> Issue:
    issue = session.exec(
        select(Issue).where(Issue.code == request_id, visible_issues(session, user))
    ).first()
    if issue is None:
        raise NotFound(f"没有服务请求 {request_id!r}")
    return issue


def request_by_token(session: Session, user: User, token: str) -> Issue:
    issue = None
    if token.isdigit() and int(token) < 2**31:
        issue = session.exec(
            select(Issue).where(Issue.id == int(token), visible_issues(session, user))
        ).first()
    if issue is None:
        raise NotFound(f"没有令牌 {token!r}")
    return issue


def token_answer(issue: Issue) -> list[dict[str, Any]]:
    return [{"service_request_id": issue.code, "token": str(issue.id)}]


# --- Mapping issues to service requests ----------------------------------------------------


@dataclass
class _Related:
    """What the answers show besides the issues' own rows, read for the whole list at once."""

    categories: dict[str, Category]
    units: dict[int, OrgUnit]
    notes: dict[int, str]
    photos: dict[int, list[Photo]] = field(default_factory=dict)
    events: dict[int, list[IssueEvent]] = field(default_factory=dict)
    contacts: dict[int, IssueContact] = field(default_factory=dict)


def _related(session: Session, issues: Sequence[Issue], user: User) -> _Related:
    ids = [i.id for i in issues]
    categories = {c.code: c for c in session.exec(select(Category))}
    unit_ids = {i.org_unit_id for i in issues}
    units = {
        u.id or 0: u for u in session.exec(select(OrgUnit).where(col(OrgUnit.id).in_(unit_ids)))
    }
    notes: dict[int, str] = {}
    noted = (
        select(IssueEvent.issue_id, IssueEvent.note)
        .where(col(IssueEvent.issue_id).in_(ids), col(IssueEvent.note).is_not(None))
        .where(col(IssueEvent.action).in_(PUBLIC_NOTE_ACTIONS))
        .order_by(col(IssueEvent.seq))
    )
    for issue_id, note in session.exec(noted):
        notes[issue_id] = note or ""
    related = _Related(categories, units, notes)
    photos: dict[int, list[Photo]] = defaultdict(list)
    for photo in session.exec(
        select(Photo).where(col(Photo.issue_id).in_(ids)).order_by(col(Photo.id))
    ):
        photos[photo.issue_id].append(photo)
    related.photos = photos
    return related


def _add_extensions(
    session: Session, related: _Related, issues: Sequence[Issue], user: User
) -> None:
    ids = [i.id for i in issues]
    events: dict[int, list[IssueEvent]] = defaultdict(list)
    query = (
        select(IssueEvent).where(col(IssueEvent.issue_id).in_(ids)).order_by(col(IssueEvent.seq))
    )
    for event in session.exec(query):
        events[event.issue_id].append(event)
    related.events = events
    mine = select(IssueContact).where(
        col(IssueContact.issue_id).in_(ids), IssueContact.sent_by_id == user.id
    )
    related.contacts = {c.issue_id: c for c in session.exec(mine)}


def service_requests(
    session: Session,
    settings: Settings,
    user: User,
    issues: Sequence[Issue],
    links: signing.PhotoLinks,
    extensions: bool = False,
) -> list[dict[str, Any]]:
    """The issues as the spec's service requests (with mySociety-style extensions if asked)."""
    if not issues:
        return []
    related = _related(session, issues, user)
    if extensions:
        _add_extensions(session, related, issues, user)
    answers = []
    for issue in issues:
        answer = _service_request(settings, issue, related, links)
        if extensions:
            answer["extended_attributes"] = _extended(settings, issue, related, links)
        answers.append(answer)
    return answers


def _time(settings: Settings, moment: datetime | None) -> str | None:
    return moment.astimezone(settings.zone).isoformat(timespec="seconds") if moment else None


def _service_request(
    settings: Settings, issue: Issue, related: _Related, links: signing.PhotoLinks
) -> dict[str, Any]:
    category = related.categories[issue.category_code]
    unit = related.units.get(issue.org_unit_id)
    photos = related.photos.get(issue.id or 0, [])
    return {
        "service_request_id": issue.code,
        "status": "closed" if issue.status in CLOSED else "open",
        "status_notes": related.notes.get(issue.id or 0),
        "service_name": category.name,
        "service_code": category.code,
        "description": issue.description,
        "agency_responsible": unit.name if unit else None,
        "service_notice": f"处置时限 {category.deadline_hours} 小时",
        "requested_datetime": _time(settings, issue.reported_at),
        "updated_datetime": _time(settings, issue.updated_at),
        "expected_datetime": _time(settings, issue.deadline_at),
        "address": issue.address,
        "address_id": None,
        "zipcode": None,
        "lat": issue.lat,
        "long": issue.lon,
        "media_url": links.url(photos[0].id or 0, "large") if photos else None,
    }


def _extended(
    settings: Settings, issue: Issue, related: _Related, links: signing.PhotoLinks
) -> dict[str, Any]:
    issue_id = issue.id or 0
    extended: dict[str, Any] = {
        "gridproof_status": issue.status,
        "source": issue.source,
        "quantity": issue.quantity,
        "rework_count": issue.rework_count,
        "photos": [
            {
                "id": p.id,
                "kind": p.kind,
                "sha256": p.sha256,
                "media_url": links.url(p.id or 0, "large"),
                "flags": list(p.flags),
            }
            for p in related.photos.get(issue_id, [])
        ],
        "updates": [
            {
                "update_id": f"{issue.code}-{e.seq}",
                "updated_datetime": _time(settings, e.at),
                "action": e.action,
                "status": "closed" if e.to_status in CLOSED else "open",
                "gridproof_status": e.to_status,
                "description": e.note,
            }
            for e in related.events.get(issue_id, [])
        ],
    }
    contact = related.contacts.get(issue_id)
    if contact is not None:  # only for the system that sent it
        extended |= {
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "phone": contact.phone,
        }
    return extended
