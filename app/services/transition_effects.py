"""What each action of the state machine does to the issue (app/services/issues.py holds the
table, the checks and the one commit): each effect changes the issue and returns the data of
its event. Effects raise AppErrors before changing anything, so nothing is half-written.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from app.config import Settings
from app.errors import (
    AfterPhotoRequired,
    Forbidden,
    NotFound,
    OverrideNoteRequired,
    ValidationFailed,
)
from app.models import Category, Issue, Photo, User
from app.models.base import as_aware
from app.models.issue import TransitionRequest
from app.models.photo import PhotoKind
from app.services import audit, checks, flag_text, orgs
from app.services.permissions import get_visible, user_org

# A rectification deadline further out than this is a typing mistake, not a plan.
MAX_DEADLINE_AHEAD = timedelta(days=366)


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


def _deadline(step: Step) -> datetime | None:
    """The deadline the request asks for, checked; None when it asks for none."""
    deadline = step.request.deadline
    if deadline is None:
        return None
    deadline = as_aware(deadline, step.settings.zone)
    if deadline <= step.now:
        raise ValidationFailed(
            "the deadline must be in the future", zh="期限须晚于当前时间", field="deadline"
        )
    if deadline > step.now + MAX_DEADLINE_AHEAD:
        raise ValidationFailed(
            "the deadline must be within a year", zh="期限须在一年以内", field="deadline"
        )
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


def accept(step: Step) -> dict[str, Any]:
    step.issue.accepted_at = step.now
    return {}


def no_effect(_step: Step) -> dict[str, Any]:
    return {}


def mark_duplicate(step: Step) -> dict[str, Any]:
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


def dispatch(step: Step) -> dict[str, Any]:
    assert step.request.org_unit is not None
    target = orgs.by_code(step.session, step.request.org_unit)
    if not orgs.is_within(target, user_org(step.session, step.user)):
        raise Forbidden(f"{step.request.org_unit} is outside your unit")
    deadline = _deadline(step) or _default_deadline(step)
    assert target.id is not None
    step.issue.org_unit_id = target.id
    _enter_dispatched(step, deadline)
    return {"org_unit": target.code, "deadline": audit.canonical_at(deadline)}


def _later_deadline(step: Step) -> datetime:
    """The asked deadline: in the future and later than the current one (else 422)."""
    issue, deadline = step.issue, _deadline(step)
    assert deadline is not None
    if issue.deadline_at is not None and deadline <= issue.deadline_at:
        raise ValidationFailed(
            "the new deadline must be later than the current one",
            zh="新期限须晚于当前期限",
            field="deadline",
        )
    return deadline


def extend_deadline(step: Step) -> dict[str, Any]:
    issue, deadline = step.issue, _later_deadline(step)
    previous = issue.deadline_at
    issue.deadline_at = deadline
    return {
        "deadline": audit.canonical_at(deadline),
        "previous_deadline": audit.canonical_at(previous) if previous else None,
    }


def this_rounds_after_photos(session: Session, issue: Issue, column: Any) -> list[Any]:
    """One column of the after-photos of the issue's current dispatch round."""
    query = select(column).where(
        Photo.issue_id == issue.id,
        Photo.kind == PhotoKind.AFTER,
        Photo.dispatch_round == issue.dispatch_round,
    )
    return list(session.exec(query).all())


def submit_rectification(step: Step) -> dict[str, Any]:
    after = this_rounds_after_photos(step.session, step.issue, Photo.id)
    if not after:
        raise AfterPhotoRequired()
    step.issue.rectified_at = step.now
    step.issue.rectified_by_id = step.user.id
    if step.request.quantity is None:
        return {"after_photos": after}
    step.issue.rectified_quantity = step.request.quantity
    return {"after_photos": after, "quantity": step.request.quantity}


def verify_pass(step: Step) -> dict[str, Any]:
    after = this_rounds_after_photos(step.session, step.issue, Photo)
    serious = sorted({flag for p in after for flag in p.flags} & checks.NEEDS_OVERRIDE_NOTE)
    if serious and not step.request.note:
        at = (step.issue.lat, step.issue.lon)
        raise OverrideNoteRequired(
            *(flag_text.of_photos(serious, after, at, english=en) for en in (False, True))
        )
    step.issue.closed_at = step.now
    step.issue.verified_by_id = step.user.id
    return {"override_flags": serious} if serious else {}


def verify_fail(step: Step) -> dict[str, Any]:
    issue = step.issue
    issue.rework_count += 1
    issue.verified_by_id = step.user.id
    # Rework keeps the deadline it had: a failed check does not buy more time.
    _enter_dispatched(step, issue.deadline_at or _default_deadline(step))
    return {"rework_count": issue.rework_count}


def _clear_outcome(issue: Issue) -> list[str]:
    """Forget the last round's rectification and verdict (they stay in the events); the names
    of the fields that held something, for the event."""
    held = {
        "rectified_at": issue.rectified_at,
        "rectified_by": issue.rectified_by_id,
        "verified_by": issue.verified_by_id,
        "closed_at": issue.closed_at,
    }
    issue.rectified_at = issue.rectified_by_id = issue.verified_by_id = issue.closed_at = None
    return [name for name, value in held.items() if value is not None]


def reopen(step: Step) -> dict[str, Any]:
    deadline = _deadline(step) or _default_deadline(step)
    cleared = _clear_outcome(step.issue)
    _enter_dispatched(step, deadline)
    return {"deadline": audit.canonical_at(deadline), "cleared": cleared}


def return_(step: Step) -> dict[str, Any]:
    """Not ours: back to the supervisors' queue, without the office's deadline or round."""
    issue = step.issue
    cleared = _clear_outcome(issue)
    if issue.deadline_at is not None:
        cleared.append("deadline")
    issue.deadline_at = issue.dispatched_at = None
    return {"cleared": cleared}


# --- 延期申请: the office asks, a supervisor decides -------------------------------------------


def _clear_extension_request(issue: Issue) -> None:
    issue.extension_deadline_at = issue.extension_note = None
    issue.extension_requested_by_id = issue.extension_requested_at = None


def request_extension(step: Step) -> dict[str, Any]:
    issue, deadline = step.issue, _later_deadline(step)
    issue.extension_deadline_at = deadline
    issue.extension_note = step.request.note
    issue.extension_requested_by_id = step.user.id
    issue.extension_requested_at = step.now
    previous = issue.deadline_at
    return {
        "deadline": audit.canonical_at(deadline),
        "current_deadline": audit.canonical_at(previous) if previous else None,
    }


def _requested(step: Step) -> dict[str, Any]:
    issue = step.issue
    assert issue.extension_deadline_at is not None and issue.extension_requested_by_id
    requester = step.session.get(User, issue.extension_requested_by_id)
    return {
        "requested_deadline": audit.canonical_at(issue.extension_deadline_at),
        "requested_by": requester.username if requester else None,
    }


def approve_extension(step: Step) -> dict[str, Any]:
    """The deadline moves to the requested one: the indicators read deadline_at, so an approved
    extension counts exactly as a supervisor's extend_deadline does."""
    issue, data = step.issue, _requested(step)
    step.request = step.request.model_copy(update={"deadline": issue.extension_deadline_at})
    deadline = _later_deadline(step)
    previous = issue.deadline_at
    issue.deadline_at = deadline
    _clear_extension_request(issue)
    return data | {
        "deadline": audit.canonical_at(deadline),
        "previous_deadline": audit.canonical_at(previous) if previous else None,
    }


def refuse_extension(step: Step) -> dict[str, Any]:
    data = _requested(step)
    _clear_extension_request(step.issue)
    return data


def leave_dispatched(step: Step) -> None:
    """An extension request pending when the issue leaves `dispatched` no longer holds."""
    _clear_extension_request(step.issue)
