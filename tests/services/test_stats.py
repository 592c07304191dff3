"""Stats, indicators, scores and rankings against hand-computed values (SQLite and PostgreSQL).

The fixture week W is Monday 2025-03-03 to Sunday 2025-03-09 in Asia/Shanghai. Every issue is
built through the service layer with explicit times, so each count below can be checked by hand
against the timeline in `build_week`.
"""

import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from app.config import Settings
from app.db import get_read_engine
from app.errors import Forbidden, ValidationFailed
from app.models import Issue, User
from app.models.issue import IssueReport, PhotoForm, TransitionRequest
from app.models.photo import PhotoKind
from app.services import auth, issues, orgs, reporting, stats
from app.services.stats import PeriodKind, RankedKind, Tally
from app.services.storage import Storage
from tests.factories import CHINA, LAT, LON, ZONE_ORGS, ZONE_USERS, Zone, jpeg

WEEK_START = date(2025, 3, 3)
LATER = datetime(2026, 1, 1, tzinfo=UTC)  # every deadline of the fixture has passed


def make_quick_zone(session: Session) -> Zone:
    """The factories' zone with token-only users: no password hashing, so a fast setup."""
    for code, name, kind, parent in ZONE_ORGS:
        orgs.add_org(session, code, name, kind, parent)
    zone = Zone()
    for username, role, org in ZONE_USERS:
        zone.users[username], zone.tokens[username] = auth.create_user(session, username, role, org)
    return zone


@pytest.fixture
def zone(session: Session) -> Zone:
    return make_quick_zone(session)


def at(text: str) -> datetime:
    """'03-05 18:00' → that wall time of 2025 in China."""
    return datetime.strptime(f"2025-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=CHINA)


class Builder:
    """Issues through the service layer, each step at an explicit time."""

    def __init__(self, session: Session, settings: Settings, zone: Zone) -> None:
        self.session, self.settings, self.zone = session, settings, zone
        self.storage = Storage(settings.upload_dir)
        self.storage.ensure_dirs()
        self.seed = 0

    def _photo(self, when: datetime) -> io.BytesIO:
        self.seed += 1
        return io.BytesIO(jpeg(seed=self.seed, taken_at=when, width=320, height=240))

    def report(
        self,
        when: str,
        category: str = "flyposter",
        quantity: float | None = None,
        fixed: bool = False,
    ) -> int:
        moment = at(when)
        uploads = reporting.Uploads({"photos": [self._photo(moment)]})
        if fixed:
            uploads.fields["after_photos"] = [self._photo(moment)]
        form = IssueReport(
            category=category, description="问题", lat=LAT, lon=LON, accuracy_m=5, quantity=quantity
        )
        user = self.zone.users["grid_worker"]
        caller = reporting.Caller(self.session, self.settings, self.storage, user)
        issue, _ = reporting.report_issue(caller, form, uploads, now=moment)
        assert issue.id is not None
        return issue.id

    def act(self, issue_id: int, username: str, action: str, when: str, **fields: Any) -> None:
        version = self.session.get(Issue, issue_id).version  # type: ignore[union-attr]
        issues.apply_transition(
            self.session,
            self.settings,
            self.zone.users[username],
            issue_id,
            TransitionRequest(action=action, **fields),
            version=version,
            now=at(when),
        )

    def dispatch(self, issue_id: int, when: str, deadline: str, office: str = "A") -> None:
        self.act(issue_id, "d_super", "dispatch", when, org_unit=office, deadline=at(deadline))

    def rectify(
        self, issue_id: int, when: str, worker: str = "a_worker", quantity: float | None = None
    ) -> None:
        moment = at(when)
        form = PhotoForm(kind=PhotoKind.AFTER, lat=LAT, lon=LON, accuracy_m=5)
        uploads = reporting.Uploads({"files": [self._photo(moment)]})
        caller = reporting.Caller(
            self.session, self.settings, self.storage, self.zone.users[worker]
        )
        reporting.add_photos(caller, issue_id, form, uploads, now=moment)
        self.act(issue_id, worker, "submit_rectification", when, quantity=quantity)

    def verify(self, issue_id: int, when: str, passed: bool = True, checker: str = "a_super"):
        action = "verify_pass" if passed else "verify_fail"
        self.act(issue_id, checker, action, when, note="核查")


def build_week(session: Session, settings: Settings, zone: Zone) -> dict[str, int]:
    """The fixture's timeline (China time); expected values are worked out in the tests."""
    b = Builder(session, settings, zone)
    ids: dict[str, int] = {}
    # I4: dispatched the week before, deadline Monday of W, fixed in time, closed late (Sat).
    ids["I4"] = i = b.report("02-27 09:00", "garbage", 2.5)
    b.dispatch(i, "02-28 10:00", "03-03 18:00")
    b.rectify(i, "03-03 12:00")
    b.verify(i, "03-08 10:00")
    # I1: everything on time.
    ids["I1"] = i = b.report("03-03 09:00", "flyposter", 3)
    b.dispatch(i, "03-03 10:00", "03-05 18:00")
    b.rectify(i, "03-04 12:00", quantity=4)  # 整改数量: one more poster found on the spot
    b.verify(i, "03-04 15:00")
    # I2: rework; fixed again after the deadline, closed late.
    ids["I2"] = i = b.report("03-03 09:10")
    b.dispatch(i, "03-03 10:10", "03-06 18:00")
    b.rectify(i, "03-05 12:00")
    b.verify(i, "03-05 15:00", passed=False)
    b.rectify(i, "03-07 10:00")
    b.verify(i, "03-07 12:00")
    # I3: dispatched, never fixed: overdue.
    ids["I3"] = i = b.report("03-04 09:00")
    b.dispatch(i, "03-04 10:00", "03-07 18:00")
    # I5: dispatched Saturday, deadline next week, fixed and closed next Monday.
    ids["I5"] = i = b.report("03-07 09:00")
    b.dispatch(i, "03-08 10:00", "03-11 18:00")
    b.rectify(i, "03-10 10:00")
    b.verify(i, "03-10 12:00")
    # I6: fixed before the deadline, verified late: closed Sunday 23:30 (still week W).
    ids["I6"] = i = b.report("03-06 08:00", "bare_soil", 12)
    b.dispatch(i, "03-06 09:00", "03-08 09:00")
    b.rectify(i, "03-08 08:00")
    b.verify(i, "03-09 23:30")
    # I7: fixed Sunday, closed Monday 00:30 (the next week).
    ids["I7"] = i = b.report("03-08 08:00", "bare_soil", 30)
    b.dispatch(i, "03-08 09:00", "03-11 18:00")
    b.rectify(i, "03-09 22:00")
    b.verify(i, "03-10 00:30")
    # I8: rejected. I10: accepted, waiting. Both stay with the reporter's grid cell A1G.
    ids["I8"] = i = b.report("03-03 11:00")
    b.act(i, "d_super", "reject", "03-03 12:00", note="不属实")
    ids["I10"] = i = b.report("03-05 09:00")
    b.act(i, "d_super", "accept", "03-05 10:00")
    # I9: office B, on time.
    ids["I9"] = i = b.report("03-03 09:20")
    b.dispatch(i, "03-03 10:20", "03-05 18:00", office="B")
    b.rectify(i, "03-04 11:00", worker="b_worker")
    b.verify(i, "03-04 16:00", checker="b_super")
    # I11: fixed on the spot (立行立改) in A1G, then verified.
    ids["I11"] = i = b.report("03-04 10:00", "flyposter", 5, fixed=True)
    b.verify(i, "03-04 11:00")
    return ids


def add_office_c(session: Session, settings: Settings, zone: Zone) -> int:
    """A third office with one issue of W, dispatched and left undone."""
    orgs.add_org(session, "C", "潮河办事处", "office", "D")
    b = Builder(session, settings, zone)
    i = b.report("03-03 13:00")
    b.dispatch(i, "03-03 14:00", "03-04 18:00", office="C")
    return i


def week(day: date = WEEK_START) -> stats.Period:
    return stats.calendar_period(PeriodKind.WEEK, day, CHINA_ZONE)


CHINA_ZONE = Settings().zone


def district_stats(session: Session, settings: Settings, zone: Zone, **kw: Any) -> Any:
    period = kw.pop("period", week())
    user = zone.users[kw.pop("username", "d_super")]
    return stats.period_stats(
        session, settings, user, period, kw.pop("org_unit", None), kw.pop("now", LATER)
    )


# --- Pure functions --------------------------------------------------------------------------


def test_volume_band_in_quarters_of_the_busiest():
    assert [stats.volume_band(v, 100) for v in (0, 1, 24, 25, 49, 50, 74, 75, 100)] == [
        0.0,
        0.25,
        0.25,
        0.5,
        0.5,
        0.75,
        0.75,
        1.0,
        1.0,
    ]
    assert stats.volume_band(3, 0) == 0.0


@pytest.mark.parametrize(
    ("value", "letter"),
    [(100, "A"), (90, "A"), (89.9, "B"), (75, "B"), (74.9, "C"), (60, "C"), (40, "D"), (39.9, "E")],
)
def test_grades(value, letter):
    assert stats.grade(value) == letter
    assert stats.grade(None) is None


def test_score_weights_renormalise_over_defined_parts_and_are_settings():
    tally = Tally(due=4, closed=2, dispatched=2, rectified_on_time=1, volume=4)
    # rework undefined (nothing submitted): (30·0.5 + 30·0.5 + 10·1) / 70
    assert stats.score(tally, 1.0, Settings()) == round(100 * 40 / 70, 1)
    only_closure = Settings(
        score_weight_on_time_rectification=0, score_weight_rework=0, score_weight_volume=0
    )
    assert stats.score(tally, 1.0, only_closure) == 50.0
    assert stats.score(Tally(), 1.0, Settings()) is None  # no work, no score
    zero = Tally(due=1, volume=1)
    assert stats.indicators(zero).rework_rate is None
    assert stats.indicators(Tally()).closure_rate is None


def test_periods_are_calendar_weeks_and_months_in_the_zone():
    monday = stats.calendar_period(PeriodKind.WEEK, date(2025, 3, 9), CHINA_ZONE)
    assert monday.start.isoformat() == "2025-03-03T00:00:00+08:00"
    assert monday.end.isoformat() == "2025-03-10T00:00:00+08:00"
    month = stats.calendar_period(PeriodKind.MONTH, date(2024, 12, 31), CHINA_ZONE)
    assert (month.start.date(), month.end.date()) == (date(2024, 12, 1), date(2025, 1, 1))
    # Sunday 23:30 and Monday 00:30 local time, as UTC "now": the default week follows.
    sunday_night = datetime(2025, 3, 9, 15, 30, tzinfo=UTC)
    monday_early = datetime(2025, 3, 9, 16, 30, tzinfo=UTC)
    assert stats.resolve_period(None, None, CHINA_ZONE, sunday_night).start.day == 3
    assert stats.resolve_period(None, None, CHINA_ZONE, monday_early).start.day == 10


def test_resolve_period_dates_datetimes_and_errors():
    now = datetime(2025, 3, 5, tzinfo=UTC)
    days = stats.resolve_period("2025-03-01", "2025-03-01", CHINA_ZONE, now)
    assert days.start.isoformat() == "2025-03-01T00:00:00+08:00"
    assert days.end.isoformat() == "2025-03-02T00:00:00+08:00"  # `to` as a date is included
    exact = stats.resolve_period("2025-03-01T01:00:00Z", "2025-03-01T12:00", CHINA_ZONE, now)
    assert exact.start == datetime(2025, 3, 1, 1, tzinfo=UTC)
    assert exact.end == datetime(2025, 3, 1, 12, tzinfo=CHINA)  # no offset: the zone's time
    lost_plus = stats.resolve_period("2025-03-01T10:00:00 08:00", None, CHINA_ZONE, now)
    assert lost_plus.start == datetime(2025, 3, 1, 10, tzinfo=CHINA)
    only_to = stats.resolve_period(None, "2025-03-09", CHINA_ZONE, now)
    assert only_to.start.isoformat() == "2025-03-03T00:00:00+08:00"
    for start, end in [("2025-03-02", "2025-03-01"), ("soon", None), (None, "2025-02-30")]:
        with pytest.raises(ValidationFailed):
            stats.resolve_period(start, end, CHINA_ZONE, now)
    with pytest.raises(ValidationFailed):
        stats.resolve_period("0001-01-01", None, CHINA_ZONE, now)


# --- The fixture week ------------------------------------------------------------------------


def test_every_indicator_of_the_week(session, settings, zone):
    build_week(session, settings, zone)
    got = district_stats(session, settings, zone)
    # due: deadline in W — I1, I2, I3, I4, I6, I9. closed by the end of W: all but I3.
    # closed on time: I1 (Tue ≤ Wed), I9; I2 Fri > Thu, I4 Sat > Mon, I6 Sun 23:30 > Sat 09:00.
    # dispatched in W: I1, I2, I3, I5, I6, I7, I9 (I4 the week before).
    # rectified on time: I1, I5, I6, I7, I9 (I2's accepted fix came after its deadline; I3 none).
    # submitted in W: I4, I1, I2 twice, I6, I7, I9, I11 on the spot = 8 (I5's is next week).
    # verify_fail: I2 once. overdue open at the end of W: I3.
    assert got.indicators.model_dump() == {
        "closure_rate": 0.8333,
        "on_time_closure_rate": 0.3333,
        "on_time_rectification_rate": 0.7143,
        "rework_rate": 0.125,
        "overdue_open": 1,
        "due": 6,
        "closed": 5,
        "closed_on_time": 2,
        "dispatched": 7,
        "rectified_on_time": 5,
        "rectifications_submitted": 8,
        "verify_fail": 1,
    }
    assert got.volume == 8  # I1–I7 and I9
    # 30·5/6 + 30·5/7 + 30·(1 − 1/8) + 10·1 (the scope is its own peer group)
    assert got.score == 82.7
    assert got.grade == "B"


def test_inside_the_week_the_same_events_are_counted(session, settings, zone):
    """Before the period's end the statement takes its current-period shape (issues with an
    event found through updated_at, not through the events' ids): the same counts come out.
    (In this fixture every such issue is also reported, due, closed or open in the week.)"""
    build_week(session, settings, zone)
    after = district_stats(session, settings, zone)
    inside = district_stats(session, settings, zone, now=at("03-09 23:59"))
    assert (after.indicators.rectifications_submitted, after.indicators.verify_fail) == (8, 1)
    assert (inside.indicators.rectifications_submitted, inside.indicators.verify_fail) == (8, 1)
    assert inside.counts == after.counts
    assert (inside.indicators.dispatched, inside.indicators.closed) == (
        after.indicators.dispatched,
        after.indicators.closed,
    )


def test_counts_live_counts_and_quantities(session, settings, zone):
    build_week(session, settings, zone)
    got = district_stats(session, settings, zone)
    # Reported in W: all but I4, by their status now.
    assert got.counts.total == 10
    assert got.counts.by_status == {
        "reported": 0,
        "accepted": 1,
        "dispatched": 1,
        "rectified": 0,
        "closed": 7,
        "rejected": 1,
        "duplicate": 0,
    }
    assert got.counts.by_category == {"bare_soil": 2, "flyposter": 8}
    assert got.counts.by_org_unit == {"A": 6, "A1G": 3, "B": 1}
    assert (got.open, got.overdue, got.due_within_24h) == (2, 1, 0)  # I3 and I10; I3 overdue
    # Closed in W: I1 (3), I2, I9, I11 (5) flyposters; I4 garbage 2.5; I6 (Sunday 23:30) 12 m².
    # rectified_quantity: what submit_rectification gave (only I1's 4), summed the same way.
    assert [q.model_dump() for q in got.quantities] == [
        {
            "category": "bare_soil",
            "name": "黄土裸露",
            "unit": "m²",
            "quantity": 12.0,
            "rectified_quantity": 0.0,
            "issues": 1,
        },
        {
            "category": "flyposter",
            "name": "非法小广告",
            "unit": "处",
            "quantity": 8.0,
            "rectified_quantity": 4.0,
            "issues": 4,
        },
        {
            "category": "garbage",
            "name": "暴露垃圾",
            "unit": "m³",
            "quantity": 2.5,
            "rectified_quantity": 0.0,
            "issues": 1,
        },
    ]
    # I7, closed Monday 00:30, belongs to the next week, with I5.
    following = district_stats(session, settings, zone, period=week(date(2025, 3, 10)))
    assert [(q.category, q.quantity, q.issues) for q in following.quantities] == [
        ("bare_soil", 30.0, 1),
        ("flyposter", 0.0, 1),
    ]


def test_outcomes_count_once_known(session, settings, zone):
    """Before its deadline an open issue is neither due nor dispatched; after, it counts."""
    b = Builder(session, settings, zone)
    i = b.report("03-03 09:00")
    b.dispatch(i, "03-03 10:00", "03-05 18:00")

    def on(when: str) -> Any:
        return district_stats(session, settings, zone, now=at(when))

    tuesday = on("03-04 12:00")
    assert (tuesday.indicators.due, tuesday.indicators.dispatched, tuesday.volume) == (0, 0, 0)
    assert (tuesday.score, tuesday.grade, tuesday.due_within_24h) == (None, None, 0)
    assert on("03-05 09:00").due_within_24h == 1
    thursday = on("03-06 09:00")
    assert (thursday.indicators.due, thursday.indicators.closed) == (1, 0)
    assert (thursday.indicators.dispatched, thursday.indicators.rectified_on_time) == (1, 0)
    assert (thursday.overdue, thursday.indicators.overdue_open) == (1, 1)
    # Fixed and closed in the following week: W keeps it as overdue at its end, not closed.
    b.rectify(i, "03-11 09:00")
    b.verify(i, "03-12 09:00")
    past = district_stats(session, settings, zone)
    assert (past.indicators.due, past.indicators.closed, past.indicators.overdue_open) == (1, 0, 1)
    assert past.indicators.on_time_rectification_rate == 0.0
    assert past.overdue == 0


def test_rankings_of_offices_flags_need_three_units(session, settings, zone):
    build_week(session, settings, zone)
    user = zone.users["d_super"]

    def ranking(kind: RankedKind = RankedKind.OFFICE) -> Any:
        return stats.rankings(
            session, settings, user, PeriodKind.WEEK, date(2025, 3, 9), kind, LATER
        )

    two = ranking()
    assert two.from_.isoformat() == "2025-03-03T00:00:00+08:00"
    # A: due I1 I2 I3 I4 I6, closed 4, on time 1; dispatched I1 I2 I3 I5 I6 I7, on time 4;
    # submitted 7 (with I11 of its grid cell A1G), failed 1. B: I9, all on time.
    a, b_ = {i.org_unit: i for i in two.items}["A"], {i.org_unit: i for i in two.items}["B"]
    assert (a.indicators.due, a.indicators.closed, a.indicators.closed_on_time) == (5, 4, 1)
    assert (a.indicators.dispatched, a.indicators.rectified_on_time) == (6, 4)
    assert (a.indicators.rectifications_submitted, a.indicators.verify_fail) == (7, 1)
    assert (a.volume, a.score, a.grade) == (7, 79.7, "B")  # 24 + 20 + 30·6/7 + 10
    assert (b_.volume, b_.score, b_.grade) == (1, 92.5, "A")  # 30 + 30 + 30 + 10·0.25
    assert [(i.rank, i.org_unit, i.flag) for i in two.items] == [(1, "B", None), (2, "A", None)]

    add_office_c(session, settings, zone)
    three = ranking()
    # C: due 1, nothing done, no rectification to judge: (0 + 0 + 10·0.25) / 70.
    assert [(i.rank, i.org_unit, i.score, i.grade, i.flag) for i in three.items] == [
        (1, "B", 92.5, "A", "red"),
        (2, "A", 79.7, "B", None),
        (3, "C", 3.6, "E", "black"),
    ]
    # Communities: A1 (over grid cell A1G) and B1 have no work in W: unranked, no flags.
    communities = ranking(RankedKind.COMMUNITY)
    assert [(i.org_unit, i.rank, i.score, i.flag) for i in communities.items] == [
        ("A1", None, None, None),
        ("B1", None, None, None),
    ]


def test_week_boundary_in_the_zone_for_rankings(session, settings, zone):
    b = Builder(session, settings, zone)
    for office in ("A", "B", "C"):
        if office == "C":
            orgs.add_org(session, "C", "潮河办事处", "office", "D")
        i = b.report("03-05 09:00")
        b.dispatch(i, "03-05 10:00", "03-09 23:45", office=office)
    # Each deadline falls on Sunday 23:45 local time (15:45 UTC, still Sunday in UTC too);
    # the next Monday 00:30 local is Sunday 16:30 UTC, yet it belongs to the next week.
    user = zone.users["d_super"]
    sunday = stats.rankings(
        session, settings, user, PeriodKind.WEEK, date(2025, 3, 9), RankedKind.OFFICE, LATER
    )
    monday = stats.rankings(
        session, settings, user, PeriodKind.WEEK, date(2025, 3, 10), RankedKind.OFFICE, LATER
    )
    assert [i.indicators.due for i in sunday.items] == [1, 1, 1]
    assert [i.indicators.due for i in monday.items] == [0, 0, 0]
    month = stats.rankings(
        session, settings, user, PeriodKind.MONTH, date(2025, 3, 31), RankedKind.OFFICE, LATER
    )
    assert month.to.isoformat() == "2025-04-01T00:00:00+08:00"
    assert sum(i.indicators.due for i in month.items) == 3


def test_scope_of_a_b_office_supervisor(session, settings, zone):
    build_week(session, settings, zone)
    got = district_stats(session, settings, zone, username="b_super")
    assert got.counts.total == 1
    assert got.counts.by_org_unit == {"B": 1}
    assert (got.indicators.due, got.indicators.closed, got.indicators.closed_on_time) == (1, 1, 1)
    assert got.quantities[0].issues == 1
    with pytest.raises(Forbidden):
        district_stats(session, settings, zone, username="b_super", org_unit="A")
    with pytest.raises(ValidationFailed):  # an unknown code is the request's error
        district_stats(session, settings, zone, username="b_super", org_unit="NOPE")
    grid = district_stats(session, settings, zone, username="a_super", org_unit="A1G")
    assert grid.org_unit == "A1G"
    assert grid.counts.by_status["rejected"] == 1 and grid.counts.total == 3
    ranked = stats.rankings(
        session,
        settings,
        zone.users["b_super"],
        PeriodKind.WEEK,
        WEEK_START,
        RankedKind.OFFICE,
        LATER,
    )
    assert [i.org_unit for i in ranked.items] == ["B"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_stats_query_is_planned_with_its_parameters_every_time(
    settings: Settings, zone: Zone, database_url: str
) -> None:
    """psycopg prepares a statement run 5 times, and PostgreSQL may then settle on a generic
    plan, which was twice as slow for this query on a small table: it runs unprepared.
    (PostgreSQL only: SQLite keeps no prepared statements across calls.)"""
    with Session(get_read_engine(database_url)) as session:
        user = session.exec(select(User).where(User.username == "d_super")).one()
        for _ in range(8):
            stats.period_stats(session, settings, user, week(), None, LATER)
            session.exec(select(User).where(User.username == "d_super")).one()
        prepared = session.exec(text("SELECT statement FROM pg_prepared_statements")).all()
    statements = [row[0] for row in prepared]
    assert any("FROM users" in s for s in statements)  # what psycopg does by default
    assert not any("FILTER (WHERE" in s for s in statements)
