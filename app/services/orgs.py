"""Org units and the subtree scoping that decides who sees what."""

from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, select

from app.errors import ValidationFailed
from app.models import OrgUnit
from app.models.org import OrgKind, OrgUnitPublic
from app.services import changes


def find(session: Session, code: str) -> OrgUnit | None:
    return session.exec(select(OrgUnit).where(OrgUnit.code == code)).first()


def by_code(session: Session, code: str) -> OrgUnit:
    """The org unit a request names: an unknown code is the request's error (422)."""
    org = find(session, code)
    if org is None:
        raise ValidationFailed(f"no org unit with code {code!r}", field="org_unit")
    return org


def in_subtree(org_id_column: Any, org: OrgUnit) -> ColumnElement[bool]:
    """SQL condition: the org unit id in the column is `org` or a unit below it."""
    return in_subtree_of(org_id_column, org.path)


def in_subtree_of(org_id_column: Any, path: Any) -> ColumnElement[bool]:
    """The same, for the unit at `path` (a value, or a bound parameter that will hold one)."""
    below = select(OrgUnit.id).where(col(OrgUnit.path).startswith(path))
    return col(org_id_column).in_(below)


def is_within(unit: OrgUnit, ancestor: OrgUnit) -> bool:
    return path_within(unit.path, ancestor.path)


def path_within(path: str, ancestor_path: str) -> bool:
    """The unit at `path` is the one at `ancestor_path` or below it."""
    return path.startswith(ancestor_path)


def add_org(session: Session, code: str, name: str, kind: str, parent_code: str | None) -> OrgUnit:
    """Add an org unit; the same values again change nothing, different ones are refused."""
    if kind not in set(OrgKind):
        raise ValidationFailed(f"unknown kind {kind!r}; one of {', '.join(OrgKind)}")
    parent = by_code(session, parent_code) if parent_code else None
    existing = find(session, code)
    if existing is not None:
        same = (existing.name, existing.kind, existing.parent_id) == (
            name,
            kind,
            parent.id if parent else None,
        )
        if not same:
            raise ValidationFailed(f"org unit {code!r} exists with other values")
        return existing
    org = OrgUnit(code=code, name=name, kind=kind, parent_id=parent.id if parent else None)
    session.add(org)
    session.flush()
    org.path = f"{parent.path if parent else '/'}{org.id}/"
    session.add(org)
    changes.bump(session)
    session.commit()
    return org


def list_public(session: Session) -> list[OrgUnitPublic]:
    units = list(session.exec(select(OrgUnit).order_by(col(OrgUnit.path))))
    codes = {u.id: u.code for u in units}
    return [
        OrgUnitPublic(
            code=u.code,
            name=u.name,
            kind=OrgKind(u.kind),
            parent_code=codes.get(u.parent_id) if u.parent_id else None,
        )
        for u in units
    ]
