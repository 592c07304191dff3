"""Who may see and do what: the contract's permission matrix in one place."""

from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, col

from app.models import Issue, OrgUnit, Role, User
from app.services import orgs

REPORTERS = frozenset({Role.WORKER, Role.SUPERVISOR})
SUPERVISORS = frozenset({Role.SUPERVISOR})
RECTIFIERS = frozenset({Role.WORKER, Role.SUPERVISOR})
EVIDENCE_READERS = frozenset({Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})


def visible_issues(session: Session, user: User) -> ColumnElement[bool]:
    """SQL condition: issues of the user's unit or below, and the issues the user reported."""
    org = user_org(session, user)
    return or_(orgs.in_subtree(Issue.org_unit_id, org), col(Issue.reported_by_id) == user.id)


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
