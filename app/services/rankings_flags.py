"""Red and black flags (红旗/黑旗) the command awards for an ended week, and a unit's history.

Why a chain of its own rather than issue events: an award is a decision of the command about
a unit and a week, not a step of any issue; filed under an issue it would sit in a chain that
is not about it (and which issue?). So the decisions form one append-only chain, hashed with
the same canonical JSON as the issues' events (services/audit.py): each link covers its
predecessor's hash, a decision cannot be changed or dropped unnoticed (`chain_problems`, run by
`gridproof verify`), and the computed suggestion is never overwritten: the rankings answer
shows both.
"""

import hashlib
import json
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import Forbidden, PeriodNotEnded, ValidationFailed
from app.models import RankingFlagAward, User
from app.models.base import Text
from app.models.user import Role
from app.services import audit, changes, orgs
from app.services.audit import GENESIS, canonical_at
from app.services.periods import iso_week, week_period
from app.services.permissions import user_org
from app.services.rankings import Award, Flag, GroupBy, RankingItem, ranked_items
from app.services.stats import Period, PeriodKind, RankedKind, calendar_period

# How far back a unit's history goes by default, and at most (a campaign's year).
HISTORY_WEEKS, MAX_HISTORY_WEEKS = 12, 53


class AwardRequest(BaseModel):
    org_unit: Text = Field(min_length=1, max_length=40)
    flag: Flag | None = Field(description="red, black, or null: no flag for this unit")
    note: Text = Field(min_length=1, max_length=2000, description="why (required)")


class AwardPublic(Award):
    seq: int
    week: str
    org_unit: str
    hash: str


def canonical_json(award: RankingFlagAward) -> bytes:
    body = {
        "seq": award.seq,
        "week": award.week,
        "org_unit": award.org_unit,
        "flag": award.flag,
        "note": award.note,
        "awarded_by": award.awarded_by,
        "awarded_at": canonical_at(award.awarded_at),
        "prev_hash": award.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def award_hash(award: RankingFlagAward) -> str:
    return hashlib.sha256(canonical_json(award)).hexdigest()


def award_flag(
    session: Session,
    settings: Settings,
    user: User,
    week: str,
    request: AwardRequest,
    now: datetime,
) -> AwardPublic:
    """Record the command's flag for a unit and an ended week; commits once."""
    period = week_period(week, settings.zone)
    mine = user_org(session, user)
    if user.role != Role.SUPERVISOR or mine.parent_id is not None:
        raise Forbidden("only the command centre's supervisors award flags")
    if period.end > now:
        raise PeriodNotEnded(f"week {week} ends at {period.end.isoformat()}")
    unit = orgs.by_code(session, request.org_unit)
    if unit.kind not in set(RankedKind) or not orgs.is_within(unit, mine):
        raise ValidationFailed(f"{unit.code} is not a ranked unit", field="org_unit")
    # The change number serialises writers: the chain's last link is read after it.
    changes.bump(session)
    last = session.exec(
        select(RankingFlagAward).order_by(col(RankingFlagAward.seq).desc()).limit(1)
    ).first()
    assert unit.id is not None and user.id is not None
    award = RankingFlagAward(
        seq=last.seq + 1 if last else 1,
        week=iso_week(period.start.date()),
        org_unit_id=unit.id,
        org_unit=unit.code,
        flag=request.flag,
        note=request.note,
        awarded_by_id=user.id,
        awarded_by=user.username,
        awarded_at=now,
        prev_hash=last.hash if last else GENESIS,
        hash="",
    )
    award.hash = award_hash(award)
    session.add(award)
    session.commit()
    return public(award)


def public(award: RankingFlagAward) -> AwardPublic:
    return AwardPublic(
        seq=award.seq,
        week=award.week,
        org_unit=award.org_unit,
        flag=award.flag,
        note=award.note,
        awarded_by=award.awarded_by,
        awarded_at=award.awarded_at,
        hash=award.hash,
    )


def latest_awards(session: Session, weeks: list[str]) -> dict[tuple[str, str], RankingFlagAward]:
    """The decision that counts per (week, unit code): the latest."""
    query = (
        select(RankingFlagAward)
        .where(col(RankingFlagAward.week).in_(weeks))
        .order_by(col(RankingFlagAward.seq))
    )
    return {(a.week, a.org_unit): a for a in session.exec(query)}


def apply_awards(session: Session, period: Period, items: list[RankingItem]) -> bool:
    """Put the week's awards beside the computed flags; True when the command decided it (then
    final_flag is the awarded flag, and null for a unit it did not flag)."""
    week = iso_week(period.start.date())
    awards = latest_awards(session, [week])
    # Decided for these units: an award for offices says nothing about the 专班.
    decided = any((week, item.org_unit) in awards for item in items)
    for item in items:
        found = awards.get((week, item.org_unit))
        if found is not None:
            item.awarded = public(found)
        item.final_flag = found.flag if found else None  # type: ignore[assignment]
    return decided


def all_awards(session: Session) -> list[AwardPublic]:
    query = select(RankingFlagAward).order_by(col(RankingFlagAward.seq))
    return [public(a) for a in session.exec(query)]


def chain_problems(session: Session) -> list[str]:
    """What is wrong with the chain of decisions, in words; empty when it holds."""
    query = select(RankingFlagAward).order_by(col(RankingFlagAward.seq))
    return audit.link_problems(
        session.exec(query), lambda a: f"flag award {a.seq}", award_hash, ("decision", "a decision")
    )


# --- A unit's history ------------------------------------------------------------------------


class WeekFlags(BaseModel):
    week: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    rank: int | None
    score: float | None
    flag: Flag | None = Field(description="computed")
    awarded: Award | None
    final_flag: Flag | None


class FlagHistory(BaseModel):
    org_unit: str
    name: str
    kind: RankedKind
    weeks: list[WeekFlags] = Field(description="the latest ended week first")
    red: int = Field(description="weeks with a red flag (final)")
    black: int = Field(description="weeks with a black flag (final)")


def history(
    session: Session,
    settings: Settings,
    user: User,
    code: str,
    weeks: int,
    now: datetime,
    last_week: str | None = None,
) -> FlagHistory:
    """The unit's rank and flags in each of `weeks` weeks up to `last_week` (default: the last
    ended one), latest first (one aggregate query each)."""
    if not 1 <= weeks <= MAX_HISTORY_WEEKS:
        raise ValidationFailed(f"weeks must be 1 to {MAX_HISTORY_WEEKS}", field="weeks")
    unit = orgs.by_code(session, code)
    if unit.kind not in set(RankedKind):
        raise ValidationFailed(f"{code} is not a ranked unit", field="org_unit")
    if not orgs.is_within(unit, user_org(session, user)):
        raise Forbidden(f"{code} is outside your unit", field="org_unit")
    kind = RankedKind(unit.kind)
    if last_week:
        last = week_period(last_week, settings.zone).start.date()
    else:
        last = now.astimezone(settings.zone).date() - timedelta(weeks=1)
    periods = [
        calendar_period(PeriodKind.WEEK, last - timedelta(weeks=n), settings.zone)
        for n in range(weeks)
    ]
    awards = latest_awards(session, [iso_week(p.start.date()) for p in periods])
    rows = []
    for period in periods:
        week = iso_week(period.start.date())
        items = ranked_items(session, settings, user, period, kind, GroupBy.ORG_UNIT, now)
        item = next(i for i in items if i.org_unit == unit.code)
        found = awards.get((week, unit.code))
        decided = any((week, i.org_unit) in awards for i in items)
        final = (found.flag if found else None) if decided else item.flag
        rows.append(
            WeekFlags(
                week=week,
                from_=period.start,
                to=period.end,
                rank=item.rank,
                score=item.score,
                flag=item.flag,
                awarded=public(found) if found else None,
                final_flag=final,
            )
        )
    return FlagHistory(
        org_unit=unit.code,
        name=unit.name,
        kind=kind,
        weeks=rows,
        red=sum(r.final_flag == "red" for r in rows),
        black=sum(r.final_flag == "black" for r in rows),
    )
