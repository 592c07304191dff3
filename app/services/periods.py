"""The periods a dashboard shows: 本周, 上周, 本月, 上月, an ISO week, or a chosen range.

Every answer that counts over a period says which one (`PeriodInfo`: its name, a Chinese
label, both ends, and the ISO week when it is one), so that a wall screen never shows a weekly
count beside an all-time one without saying so.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from app.errors import ValidationFailed
from app.services.moments import check_day
from app.services.stats import Period, PeriodKind, calendar_period, resolve_period

# A chosen range may span a year (a leap year's 366 days), no more.
MAX_RANGE = timedelta(days=366)
_WEEK = re.compile(r"(\d{4})-W(\d{1,2})")


class NamedPeriod(StrEnum):
    THIS_WEEK = "this_week"
    LAST_WEEK = "last_week"
    THIS_MONTH = "this_month"
    LAST_MONTH = "last_month"


LABELS = {
    NamedPeriod.THIS_WEEK: "本周",
    NamedPeriod.LAST_WEEK: "上周",
    NamedPeriod.THIS_MONTH: "本月",
    NamedPeriod.LAST_MONTH: "上月",
}


class PeriodInfo(BaseModel):
    """Which period an answer counts."""

    name: str = Field(description="this_week, last_week, this_month, last_month, week or range")
    label: str = Field(description="in Chinese, with its first and last day")
    from_: datetime = Field(serialization_alias="from")
    to: datetime = Field(description="the end of the period, excluded")
    week: str | None = Field(description="the ISO week (2026-W49) when the period is one")
    kind: PeriodKind | None = Field(description="week or month when it is a calendar one")


@dataclass(frozen=True)
class Chosen:
    period: Period
    info: PeriodInfo

    @property
    def day(self) -> date:
        """A day inside the period (its first), in the zone of its ends."""
        return self.period.start.date()


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_period(text: str, zone: ZoneInfo, name: str = "week") -> Period:
    """The ISO week `YYYY-Www` (Monday 00:00 to the next Monday, in the zone); else 422."""
    match = _WEEK.fullmatch(text.strip())
    try:
        if not match:
            raise ValueError(text)
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ValidationFailed(
            f"{name}: {text!r} is not a week (YYYY-Www, e.g. 2026-W49, a week of that year)",
            field=name,
        ) from None
    return calendar_period(PeriodKind.WEEK, check_day(monday, name), zone)


def named_period(name: NamedPeriod, zone: ZoneInfo, now: datetime) -> Period:
    today = now.astimezone(zone).date()
    kind = PeriodKind.WEEK if name.endswith("week") else PeriodKind.MONTH
    current = calendar_period(kind, today, zone)
    if name.startswith("this"):
        return current
    return calendar_period(kind, (current.start - timedelta(days=1)).date(), zone)


def previous(period: Period, kind: PeriodKind, zone: ZoneInfo) -> Period:
    """The calendar week or month before this one."""
    return calendar_period(kind, (period.start.astimezone(zone) - timedelta(days=1)).date(), zone)


def resolve(
    name: NamedPeriod | None,
    week: str | None,
    from_text: str | None,
    to_text: str | None,
    zone: ZoneInfo,
    now: datetime,
) -> Chosen:
    """The period asked by name, by ISO week or by from/to (default: this week); one way only."""
    ways = [bool(name), bool(week), bool(from_text or to_text)]
    if sum(ways) > 1:
        raise ValidationFailed("give a period, a week or from/to, not several", field="period")
    if week:
        period = week_period(week, zone)
        return Chosen(period, info(period, "week", zone))
    if name or not (from_text or to_text):
        name = name or NamedPeriod.THIS_WEEK
        period = named_period(name, zone, now)
        return Chosen(period, info(period, name.value, zone))
    period = resolve_period(from_text, to_text, zone, now)
    if period.end - period.start > MAX_RANGE:
        raise ValidationFailed(
            f"the range from {period.start.date()} to {period.end.date()} is longer than a year",
            field="to",
        )
    return Chosen(period, info(period, "range", zone))


def info(period: Period, name: str, zone: ZoneInfo) -> PeriodInfo:
    first = period.start.astimezone(zone)
    last = (period.end - timedelta(microseconds=1)).astimezone(zone)
    kind = _calendar_kind(period, zone)
    week = iso_week(first.date()) if kind == PeriodKind.WEEK else None
    label = LABELS.get(NamedPeriod(name)) if name in set(NamedPeriod) else None
    if label is None and week:
        label = f"第{int(week[-2:])}周"
    elif label is None and kind == PeriodKind.MONTH:
        label = f"{first.year}年{first.month}月"
    days = f"{first:%Y-%m-%d} 至 {last:%Y-%m-%d}"
    return PeriodInfo(
        name=name,
        label=f"{label}（{days}）" if label else days,
        from_=first,
        to=period.end.astimezone(zone),
        week=week,
        kind=kind,
    )


def _calendar_kind(period: Period, zone: ZoneInfo) -> PeriodKind | None:
    day = period.start.astimezone(zone).date()
    for kind in PeriodKind:
        if calendar_period(kind, day, zone) == period:
            return kind
    return None
