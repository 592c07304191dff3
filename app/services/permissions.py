"""Who may see and do what: the contract's permission matrix in one place."""

from typing import Any

from sqlalchemy import ColumnElement, bindparam, or_
from sqlmodel import Session, col, select

from app.errors import NotFound
from app.models import Issue, OrgUnit, Role, User
from app.services import orgs

REPORTERS = frozenset({Role.WORKER, Role.SUPERVISOR, Role.EXTERNAL})
SUPERVISORS = frozenset({Role.SUPERVISOR})
RECTIFIERS = frozenset({Role.WORKER, Role.SUPERVISOR})
EVIDENCE_READERS = frozenset({Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})


def visible_issues(session: Session, user: User) -> ColumnElement[bool]:
    """SQL condition: issues of the user's unit or below, and the issues the user reported."""
    return _visible(user_org(session, user).path, user.id)


def _visible(path: Any, user_id: Any) -> ColumnElement[bool]:
    return or_(orgs.in_subtree_of(Issue.org_unit_id, path), col(Issue.reported_by_id) == user_id)


def get_visible(session: Session, issue_id: int, user: User, *, lock: bool = False) -> Issue:
    """The issue, if the user may see it; NotFound otherwise (no hint that it exists)."""
    query = select(Issue).where(Issue.id == issue_id, visible_issues(session, user))
    issue = session.exec(query.with_for_update() if lock else query).first()
    if issue is None:
        raise NotFound(f"no issue {issue_id}")
    return issue


# The same rule with the caller as bound parameters, for a statement built once and run for
# anyone with `caller_params` (building a large statement per request costs more than running it).
VISIBLE_TO_CALLER = _visible(bindparam("caller_path"), bindparam("caller_id"))


def caller_params(session: Session, user: User) -> dict[str, Any]:
    """The values of VISIBLE_TO_CALLER's parameters for this user."""
    return {"caller_path": user_org(session, user).path, "caller_id": user.id}


def user_org(session: Session, user: User) -> OrgUnit:
    org = session.get(OrgUnit, user.org_unit_id)
    assert org is not None
    return org


def acts_on(session: Session, user: User, issue: Issue) -> bool:
    """True when the issue's responsible unit is the user's unit or below it."""
    unit = session.get(OrgUnit, issue.org_unit_id)
    return unit is not None and orgs.is_within(unit, user_org(session, user))


def may_read_evidence(user: User, issue: Issue) -> bool:
    """Originals, events and evidence bundles: supervisors, auditors, admins, and the reporter."""
    return user.role in EVIDENCE_READERS or (
        user.role == Role.WORKER and issue.reported_by_id == user.id
    )
