"""The rectification state machine, and reading an issue within the caller's scope.

TRANSITIONS is the one table of the state machine: the transition endpoint, the permission
check, `allowed_actions`, the statuses that count as open and the pages all read it. Photo
intake is in services/reporting.py.
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Row
from sqlmodel import Session, select

from app.config import Settings
from app.errors import (
    AfterPhotoRequired,
    Forbidden,
    InvalidTransition,
    NotFound,
    OverrideNoteRequired,
    ValidationFailed,
    VersionConflict,
)
from app.models import Category, Issue, Photo, Role, User
from app.models.base import as_aware, utcnow
from app.models.issue import IssueStatus, TransitionRequest
from app.models.photo import PhotoKind
from app.services import audit, changes, checks, idempotency, orgs
from app.services.permissions import (
    RECTIFIERS,
    SUPERVISORS,
    acts_on,
    get_visible,
    user_org,
)

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
    # Four eyes: who submitted the rectification or took this round's after-photos may not check it.
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

# The statuses no action leads out of but reopen; every other status counts as open.
TERMINAL = frozenset({S.CLOSED, S.REJECTED, S.DUPLICATE})
OPEN_STATUSES = frozenset(S) - TERMINAL
# A rectification deadline further out than this is a typing mistake, not a plan.
MAX_DEADLINE_AHEAD = timedelta(days=366)


def allowed_actions(
    issue: Issue | Row[Any], user: User, in_scope: bool, after_by: Collection[int]
) -> list[str]:
    """The actions this user may take on this issue now, read off TRANSITIONS.

    `in_scope`: the issue's responsible unit is the user's unit or below (permissions.acts_on);
    `after_by`: who uploaded the after-photos of the issue's current dispatch round.
    """
    return [
        action.value
        for action, rule in TRANSITIONS.items()
        if issue.status in rule.sources
        and user.role in rule.roles
        and in_scope
        and not (rule.not_by_rectifier and _rectified_by(issue, user, after_by))
    ]


def _rectified_by(issue: Issue | Row[Any], user: User, after_by: Collection[int]) -> bool:
    return issue.rectified_by_id == user.id or user.id in after_by


# --- The state machine -----------------------------------------------------------------------


@dataclass
class Step:
    """One transition being applied: what its effect reads and changes."""

    session: Session
    settings: Settings
    issue: Issue
    user: User
    request: TransitionRequest
    now: datetime


Effect = Callable[[Step], dict[str, Any]]


def apply_transition(
    session: Session,
    settings: Settings,
    user: User,
    issue_id: int,
    request: TransitionRequest,
    *,
    version: int,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Issue:
    """Check and apply one action of TRANSITIONS at the issue's `version` (If-Match); stamps
    the time, writes the event, commits. A retry with the same Idempotency-Key and request is
    answered with the issue as the first one left it in the ledger (its current state)."""
    now = now or utcnow()
    action = _action(request)
    issue = get_visible(session, issue_id, user, lock=True)
    # Read after the lock: the retry of a transition that committed meanwhile is seen here.
    fields = {"issue_id": issue_id, "version": version, **request.model_dump(mode="json")}
    fingerprint = idempotency.fingerprint(fields, {})
    if idempotency.first_result(session, user, idempotency_key, lambda: fingerprint):
        session.rollback()
        return get_visible(session, issue_id, user)
    if issue.version != version:
        raise VersionConflict(
            f"the issue is at version {issue.version}, not {version}; reload it",
            current_version=issue.version,
        )
    _check(session, issue, user, action, request)
    from_status = issue.status
    data = EFFECTS[action](Step(session, settings, issue, user, request, now))
    issue.status = TRANSITIONS[action].target
    changes.touch(session, issue, now)
    audit.append_event(
        session, issue, user, action, now, from_status=from_status, note=request.note, data=data
    )
    if idempotency_key is not None:
        idempotency.remember(session, user, idempotency_key, fingerprint, {"issue_id": issue_id})
    session.commit()
    return issue


def _action(request: TransitionRequest) -> Action:
    try:
        return Action(request.action)
    except ValueError:
        raise ValidationFailed(
            f"unknown action {request.action!r}; one of {', '.join(Action)}", field="action"
        ) from None


def _check(
    session: Session, issue: Issue, user: User, action: Action, request: TransitionRequest
) -> None:
    """Refuse the action from this status, by this user, or without what it needs."""
    rule = TRANSITIONS[action]
    if issue.status not in rule.sources:
        raise InvalidTransition(
            f"{action} is not possible from {issue.status}",
            allowed_from=sorted(rule.sources),
        )
    if user.role not in rule.roles:
        raise Forbidden(f"a {user.role} may not {action}")
    if not acts_on(session, user, issue):
        raise Forbidden(f"only the responsible unit or above may {action} this issue")
    if rule.not_by_rectifier and _rectified_by(
        issue, user, _this_rounds_after_photos(session, issue, Photo.uploaded_by_id)
    ):
        raise Forbidden("the rectification must be checked by someone other than who made it")
    missing = [name for name in rule.needs if getattr(request, name) in (None, "")]
    if missing:
        raise ValidationFailed(f"{action} needs {', '.join(missing)}", missing=missing)


def _deadline(step: Step) -> datetime | None:
    """The deadline the request asks for, checked; None when it asks for none."""
    deadline = step.request.deadline
    if deadline is None:
        return None
    deadline = as_aware(deadline, step.settings.zone)
    if deadline <= step.now:
        raise ValidationFailed("the deadline must be in the future", field="deadline")
    if deadline > step.now + MAX_DEADLINE_AHEAD:
        raise ValidationFailed("the deadline must be within a year", field="deadline")
    return deadline


def _default_deadline(step: Step) -> datetime:
    category = step.session.get(Category, step.issue.category_code)
    assert category is not None
    return step.now + timedelta(hours=category.deadline_hours)


def _enter_dispatched(step: Step, deadline: datetime) -> None:
    issue = step.issue
    issue.dispatched_at = step.now
    issue.deadline_at = deadline
    issue.dispatch_round += 1
    issue.rectified_at = None


def _accept(step: Step) -> dict[str, Any]:
    step.issue.accepted_at = step.now
    return {}


def _no_effect(_step: Step) -> dict[str, Any]:
    return {}


def _mark_duplicate(step: Step) -> dict[str, Any]:
    issue, duplicate_of = step.issue, step.request.duplicate_of
    assert duplicate_of is not None
    if duplicate_of == issue.id:
        raise ValidationFailed("an issue cannot duplicate itself", field="duplicate_of")
    try:
        original = get_visible(step.session, duplicate_of, step.user)
    except NotFound:
        raise ValidationFailed(
            f"no issue {duplicate_of} to be a duplicate of", field="duplicate_of"
        ) from None
    issue.duplicate_of_id = original.id
    return {"duplicate_of": original.id}


def _dispatch(step: Step) -> dict[str, Any]:
    assert step.request.org_unit is not None
    target = orgs.by_code(step.session, step.request.org_unit)
    if not orgs.is_within(target, user_org(step.session, step.user)):
        raise Forbidden(f"{step.request.org_unit} is outside your unit")
    deadline = _deadline(step) or _default_deadline(step)
    assert target.id is not None
    step.issue.org_unit_id = target.id
    _enter_dispatched(step, deadline)
    return {"org_unit": target.code, "deadline": audit.canonical_at(deadline)}


def _extend_deadline(step: Step) -> dict[str, Any]:
    issue, deadline = step.issue, _deadline(step)
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


def _this_rounds_after_photos(session: Session, issue: Issue, column: Any) -> list[Any]:
    """One column of the after-photos of the issue's current dispatch round."""
    query = select(column).where(
        Photo.issue_id == issue.id,
        Photo.kind == PhotoKind.AFTER,
        Photo.dispatch_round == issue.dispatch_round,
    )
    return list(session.exec(query).all())


def _submit_rectification(step: Step) -> dict[str, Any]:
    after = _this_rounds_after_photos(step.session, step.issue, Photo.id)
    if not after:
        raise AfterPhotoRequired()
    step.issue.rectified_at = step.now
    step.issue.rectified_by_id = step.user.id
    if (quantity := step.request.quantity) is not None:
        step.issue.rectified_quantity = quantity
    return {"after_photos": after} | ({"quantity": quantity} if quantity is not None else {})


def _verify_pass(step: Step) -> dict[str, Any]:
    flagged = _this_rounds_after_photos(step.session, step.issue, Photo.flags)
    serious = sorted({flag for flags in flagged for flag in flags} & checks.NEEDS_OVERRIDE_NOTE)
    if serious and not step.request.note:
        raise OverrideNoteRequired(
            f"the after-photos are flagged {', '.join(serious)}: say in a note why they pass",
            flags=serious,
        )
    step.issue.closed_at = step.now
    step.issue.verified_by_id = step.user.id
    return {"override_flags": serious} if serious else {}


def _verify_fail(step: Step) -> dict[str, Any]:
    issue = step.issue
    issue.rework_count += 1
    issue.verified_by_id = step.user.id
    # Rework keeps the deadline it had: a failed check does not buy more time.
    _enter_dispatched(step, issue.deadline_at or _default_deadline(step))
    return {"rework_count": issue.rework_count}


def _reopen(step: Step) -> dict[str, Any]:
    deadline = _deadline(step) or _default_deadline(step)
    step.issue.closed_at = None
    _enter_dispatched(step, deadline)
    return {"deadline": audit.canonical_at(deadline)}


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
