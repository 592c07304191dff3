"""The range of dates and times the service accepts from a client.

Python's datetime stops at years 1 and 9999: a moment near either end overflows when it is
moved to UTC or to the zone (a 500 before this check). Nothing in a ledger of street issues
lies outside these years, so anything beyond is a typing mistake, answered with a 422.
"""

from datetime import date, datetime

from app.errors import ValidationFailed

MIN_YEAR, MAX_YEAR = 1970, 2999


def check_moment(moment: datetime, name: str) -> datetime:
    """The moment, if its year is within MIN_YEAR..MAX_YEAR; else validation_error."""
    check_day(moment.date(), name)
    return moment


def check_day(day: date, name: str) -> date:
    """The day, if its year is within MIN_YEAR..MAX_YEAR; else validation_error."""
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValidationFailed(
            f"{name}: {day.isoformat()} is out of range (years {MIN_YEAR} to {MAX_YEAR})",
            field=name,
        )
    return day
