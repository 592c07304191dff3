"""What an issue's audit chain says, compared with the rows an auditor reads.

The chain is the record; the rows are what the API shows. The status is replayed from the
events through the one transition table (issues.TRANSITIONS); the report event names the code,
category, description, address and place; each photo event names its photos' facts
(audit.photo_facts). Events written before a fact was recorded name fewer keys: only the keys
an event has are compared.
"""

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from app.models import Issue, IssueEvent, OrgUnit, Photo, User
from app.models.issue import IssueStatus
from app.services import audit
from app.services.issues import TRANSITIONS, Action

REPORT = "report"
# The report event's data keys, by the issue's column they record.
REPORTED_FIELDS = {
    "code": "code",
    "category": "category_code",
    "description": "description",
    "address": "address",
    "lat": "lat",
    "lon": "lon",
    "location_source": "location_source",
}
TRANSITION_ACTIONS = {action.value: action for action in Action}


def issue_problems(
    session: Session, issue: Issue, events: list[IssueEvent], photos: list[Photo]
) -> list[str]:
    """Where the issue's rows differ from what its chain records, one line each."""
    where = f"issue {issue.id} ({issue.code})"
    if not events:
        return []  # said by the caller: an issue without events
    problems = replay_problems(where, issue, events)
    problems += _reported_problems(where, issue, events[0])
    problems += _actor_problems(session, where, events)
    problems += _who_and_where_problems(session, where, issue, events)
    problems += photo_problems(where, events, photos)
    return problems


def replay_problems(where: str, issue: Issue, events: list[IssueEvent]) -> list[str]:
    """The status, rounds, rework count and deadline that the events lead to, against the row."""
    problems: list[str] = []
    status: str | None = None
    rounds = reworks = 0
    deadline: str | None = None
    for event in events:
        target, why = _step(status, event)
        if why:
            problems.append(f"{where} event {event.seq}: {why}")
        if event.to_status != target:
            problems.append(
                f"{where} event {event.seq}: {event.action} leads to {target}, "
                f"the event records {event.to_status}"
            )
        # Each entry into `dispatched` starts a round (an extension stays in it).
        rounds += target == IssueStatus.DISPATCHED and status != IssueStatus.DISPATCHED
        reworks += event.action == Action.VERIFY_FAIL
        deadline = event.data.get("deadline", deadline)
        status = target
    if issue.status != status:
        problems.append(f"{where}: status is {issue.status}, its events lead to {status}")
    if issue.dispatch_round != rounds:
        problems.append(f"{where}: dispatch_round is {issue.dispatch_round}, events give {rounds}")
    if issue.rework_count != reworks:
        problems.append(f"{where}: rework_count is {issue.rework_count}, events give {reworks}")
    stored = audit.canonical_at(issue.deadline_at) if issue.deadline_at else None
    if deadline is not None and stored != deadline:
        problems.append(f"{where}: deadline is {stored}, its events give {deadline}")
    return problems


def _step(status: str | None, event: IssueEvent) -> tuple[str | None, str | None]:
    """The status after this event by the transition table, and what is wrong with the step."""
    if event.action == REPORT:
        target = IssueStatus.RECTIFIED if event.data.get("on_the_spot") else IssueStatus.REPORTED
        return target, None if status is None else "a second report event"
    if status is None:
        return None, "the chain does not begin with a report event"
    if event.from_status != status:
        return status, f"records from_status {event.from_status}, the issue was {status}"
    action = TRANSITION_ACTIONS.get(event.action)
    if action is None:
        return status, None  # photos, notes: the status stays
    rule = TRANSITIONS[action]
    if status not in rule.sources:
        return rule.target, f"{event.action} is not possible from {status}"
    return rule.target, None


def _reported_problems(where: str, issue: Issue, report: IssueEvent) -> list[str]:
    problems = []
    for key, column in REPORTED_FIELDS.items():
        if key in report.data and report.data[key] != getattr(issue, column):
            problems.append(
                f"{where}: {column} is {getattr(issue, column)!r}, "
                f"the report event records {report.data[key]!r}"
            )
    if report.actor_id != issue.reported_by_id:
        problems.append(
            f"{where}: reported_by is user {issue.reported_by_id}, the event's actor "
            f"is user {report.actor_id} ({report.actor})"
        )
    return problems


def _who_and_where_problems(
    session: Session, where: str, issue: Issue, events: list[IssueEvent]
) -> list[str]:
    """Who rectified and who checked it (four eyes), and the unit it was last dispatched to."""
    rectified_by = verified_by = office = None
    for event in events:
        if event.action == Action.SUBMIT_RECTIFICATION or (
            event.action == REPORT and event.data.get("on_the_spot")
        ):
            rectified_by = event.actor_id
        if event.action in (Action.VERIFY_PASS, Action.VERIFY_FAIL):
            verified_by = event.actor_id
        office = event.data.get("org_unit", office)
    problems = []
    for column, expected in (("rectified_by_id", rectified_by), ("verified_by_id", verified_by)):
        if expected is not None and getattr(issue, column) != expected:
            problems.append(
                f"{where}: {column} is user {getattr(issue, column)}, its events give user "
                f"{expected}"
            )
    if office is not None:
        unit = session.get(OrgUnit, issue.org_unit_id)
        if unit is None or unit.code != office:
            problems.append(
                f"{where}: org_unit is {unit.code if unit else None}, last dispatched to {office}"
            )
    return problems


def _actor_problems(session: Session, where: str, events: list[IssueEvent]) -> list[str]:
    """The actor's name is hashed; the user id beside it must be that user."""
    ids = {event.actor_id for event in events}
    names = dict(session.exec(select(User.id, User.username).where(col(User.id).in_(ids))).all())
    return [
        f"{where} event {event.seq}: actor is {event.actor!r}, "
        f"its user {event.actor_id} is {names.get(event.actor_id)!r}"
        for event in events
        if names.get(event.actor_id) != event.actor
    ]


def photo_problems(where: str, events: list[IssueEvent], photos: Iterable[Photo]) -> list[str]:
    """Each photo row against the event that recorded it; photos no event names."""
    recorded: dict[int, tuple[IssueEvent, dict[str, Any]]] = {}
    for event in events:
        for ref in event.data.get("photos", []):
            recorded[ref["id"]] = (event, ref)
    problems = []
    for photo in photos:
        assert photo.id is not None
        if photo.id not in recorded:
            problems.append(f"{where}: photo {photo.id} ({photo.kind}) is on no event of the chain")
            continue
        event, ref = recorded.pop(photo.id)
        facts = audit.photo_facts(photo)
        for key in sorted(ref.keys() & facts.keys()):
            if ref[key] != facts[key]:
                problems.append(
                    f"{where}: photo {photo.id} {key} is {facts[key]!r}, "
                    f"event {event.seq} records {ref[key]!r}"
                )
        if photo.uploaded_by_id != event.actor_id:
            problems.append(
                f"{where}: photo {photo.id} uploaded by user {photo.uploaded_by_id}, "
                f"event {event.seq} by user {event.actor_id} ({event.actor})"
            )
    for photo_id, (event, _ref) in sorted(recorded.items()):
        problems.append(f"{where}: photo {photo_id} recorded by event {event.seq} is missing")
    return problems
