"""The rectification state machine, and reading an issue within the caller's scope.

TRANSITIONS is the one table of the state machine: the transition endpoint, the permission
check, `allowed_actions`, the statuses that count as open and the pages all read it. Photo
intake is in services/reporting.py.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row
from sqlmodel import Session

from app.config import Settings
from app.errors import AppError, Forbidden, InvalidTransition, ValidationFailed, VersionConflict
from app.models import Issue, Photo, Role, User
from app.models.base import utcnow
from app.models.issue import IssueStatus, TransitionRequest
from app.services import audit, changes, idempotency
from app.services import transition_effects as fx
from app.services.permissions import RECTIFIERS, SUPERVISORS, acts_on, get_visible

S = IssueStatus


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    MARK_DUPLICATE = "mark_duplicate"
    DISPATCH = "dispatch"
    RETURN = "return"
    EXTEND_DEADLINE = "extend_deadline"
    REQUEST_EXTENSION = "request_extension"
    APPROVE_EXTENSION = "approve_extension"
    REFUSE_EXTENSION = "refuse_extension"
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
    # True: only while an extension request is pending, and not by who asked; False: only
    # while none is; None: either way.
    extension_pending: bool | None = None


TRANSITIONS: dict[Action, Rule] = {
    Action.ACCEPT: Rule(frozenset({S.REPORTED}), S.ACCEPTED, SUPERVISORS),
    Action.REJECT: Rule(frozenset({S.REPORTED, S.ACCEPTED}), S.REJECTED, SUPERVISORS, ("note",)),
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
    Action.REQUEST_EXTENSION: Rule(
        frozenset({S.DISPATCHED}),
        S.DISPATCHED,
        RECTIFIERS,
        ("deadline", "note"),
        extension_pending=False,
    ),
    Action.APPROVE_EXTENSION: Rule(
        frozenset({S.DISPATCHED}), S.DISPATCHED, SUPERVISORS, extension_pending=True
    ),
    Action.REFUSE_EXTENSION: Rule(
        frozenset({S.DISPATCHED}), S.DISPATCHED, SUPERVISORS, ("note",), extension_pending=True
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
MAX_DEADLINE_AHEAD = fx.MAX_DEADLINE_AHEAD


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
        and _extension_fits(rule, issue, user) is None
    ]


def _rectified_by(issue: Issue | Row[Any], user: User, after_by: Collection[int]) -> bool:
    return issue.rectified_by_id == user.id or user.id in after_by


def _extension_fits(rule: Rule, issue: Issue | Row[Any], user: User) -> AppError | None:
    """The error the rule's extension condition refuses this user with now (None: none)."""
    pending = issue.extension_deadline_at is not None
    if rule.extension_pending is None or rule.extension_pending == pending:
        if rule.extension_pending and issue.extension_requested_by_id == user.id:
            return Forbidden(
                "an extension request is decided by someone other than who asked",
                zh="延期申请须由申请人以外的人审批",
            )
        return None
    if pending:
        return InvalidTransition(
            "an extension request is already pending", zh="已有待审批的延期申请"
        )
    return InvalidTransition("no extension request is pending", zh="没有待审批的延期申请")


# --- The state machine -----------------------------------------------------------------------


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
    step = fx.Step(session, settings, issue, user, request, now)
    data = EFFECTS[action](step)
    issue.status = TRANSITIONS[action].target
    if issue.status != S.DISPATCHED:
        fx.leave_dispatched(step)
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
            zh=f"问题处于 {issue.status} 状态，不能执行 {action}",
            allowed_from=sorted(rule.sources),
        )
    if user.role not in rule.roles:
        raise Forbidden(f"a {user.role} may not {action}", zh=f"{user.role} 角色不能执行 {action}")
    if not acts_on(session, user, issue):
        raise Forbidden(
            f"only the responsible unit or above may {action} this issue",
            zh=f"只有责任单位及其上级可以执行 {action}",
        )
    if (refused := _extension_fits(rule, issue, user)) is not None:
        raise refused
    if rule.not_by_rectifier and _rectified_by(
        issue, user, fx.this_rounds_after_photos(session, issue, Photo.uploaded_by_id)
    ):
        raise Forbidden("the rectification must be checked by someone other than who made it")
    if request.quantity is not None and action != Action.SUBMIT_RECTIFICATION:
        raise ValidationFailed(
            "only submit_rectification takes a quantity",
            zh="只有提交整改时可填写整改数量",
            field="quantity",
        )
    missing = [name for name in rule.needs if getattr(request, name) in (None, "")]
    if missing:
        raise ValidationFailed(
            f"{action} needs {', '.join(missing)}",
            zh=f"{action} 需要填写 {', '.join(missing)}",
            missing=missing,
        )


EFFECTS: dict[Action, fx.Effect] = {
    Action.ACCEPT: fx.accept,
    Action.REJECT: fx.no_effect,
    Action.MARK_DUPLICATE: fx.mark_duplicate,
    Action.DISPATCH: fx.dispatch,
    Action.RETURN: fx.return_,
    Action.EXTEND_DEADLINE: fx.extend_deadline,
    Action.REQUEST_EXTENSION: fx.request_extension,
    Action.APPROVE_EXTENSION: fx.approve_extension,
    Action.REFUSE_EXTENSION: fx.refuse_extension,
    Action.SUBMIT_RECTIFICATION: fx.submit_rectification,
    Action.VERIFY_PASS: fx.verify_pass,
    Action.VERIFY_FAIL: fx.verify_fail,
    Action.REOPEN: fx.reopen,
}
assert set(EFFECTS) == set(TRANSITIONS)
