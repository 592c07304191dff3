"""Awarded flags, trend, flag history, named periods, group_by and stats by source, over HTTP."""

from datetime import datetime

import pytest
from sqlmodel import col, select

from app.models import Issue, RankingFlagAward
from app.services import grid_import, rankings_flags
from app.services.periods import iso_week
from tests import grid_samples
from tests.factories import CHINA
from tests.routers.test_dashboard_api import get
from tests.services.test_stats import add_office_c, build_week, make_quick_zone

W10 = "2025-W10"  # 2025-03-03 to 2025-03-09, China time


@pytest.fixture
def zone(session):
    return make_quick_zone(session)


@pytest.fixture
def week(session, settings, zone):
    ids = build_week(session, settings, zone)
    add_office_c(session, settings, zone)
    return ids


def award(client, zone, week=W10, username="d_super", **body):
    body = {"org_unit": "A", "flag": "red", "note": "周末督查：整改彻底"} | body
    return client.post(f"/api/v1/rankings/{week}/flags", json=body, headers=zone.headers(username))


def awards_count(session) -> int:
    return len(session.exec(select(RankingFlagAward)).all())


def test_awarded_flags_sit_beside_the_suggestion(client, session, zone, week):
    made = award(client, zone, org_unit="A", flag="red")
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["week"], body["org_unit"], body["flag"], body["seq"]) == (W10, "A", "red", 1)
    assert body["awarded_by"] == "d_super" and len(body["hash"]) == 64
    ranked = get(client, zone, "/api/v1/rankings", week=W10).json()
    assert ranked["flags_decided"] is True
    rows = {i["org_unit"]: i for i in ranked["items"]}
    # The computed suggestion stays; the command's decision is final (B loses its red flag).
    assert (rows["B"]["flag"], rows["B"]["final_flag"], rows["B"]["awarded"]) == ("red", None, None)
    assert (rows["A"]["flag"], rows["A"]["final_flag"]) == (None, "red")
    assert rows["A"]["awarded"]["note"] == "周末督查：整改彻底"
    assert (rows["C"]["flag"], rows["C"]["final_flag"]) == ("black", None)
    # Awards for offices decide nothing about the communities' ranking of the same week.
    communities = get(client, zone, "/api/v1/rankings", week=W10, kind="community").json()
    assert communities["flags_decided"] is False
    assert all(i["final_flag"] == i["flag"] for i in communities["items"])
    # A later decision for the same unit counts; the earlier one stays in the chain.
    again = award(client, zone, org_unit="A", flag=None, note="复核后撤销")
    assert again.status_code == 201 and again.json()["seq"] == 2
    items = get(client, zone, "/api/v1/rankings", week=W10).json()["items"]
    rows = {i["org_unit"]: i for i in items}
    assert rows["A"]["final_flag"] is None and rows["A"]["awarded"]["note"] == "复核后撤销"
    assert rankings_flags.chain_problems(session) == []


def test_a_tampered_decision_breaks_the_chain(client, session, zone, week):
    assert award(client, zone).status_code == 201
    assert award(client, zone, org_unit="C", flag="black").status_code == 201
    first = session.exec(select(RankingFlagAward).where(col(RankingFlagAward.seq) == 1)).one()
    first.flag = "black"
    session.add(first)
    session.commit()
    problems = rankings_flags.chain_problems(session)
    assert problems == ["flag award 1: hash does not match the decision's content"]


@pytest.mark.parametrize(
    ("username", "week_text", "body", "status", "code"),
    [
        ("a_super", W10, {}, 403, "forbidden"),  # a supervisor, not of the command centre
        ("viewer", W10, {}, 403, "forbidden"),
        ("admin", W10, {}, 403, "forbidden"),
        ("d_super", "this", {}, 409, "period_not_ended"),  # replaced by the current week below
        ("d_super", "2025-W99", {}, 422, "validation_error"),
        ("d_super", "2025-10", {}, 422, "validation_error"),
        ("d_super", W10, {"note": ""}, 422, "validation_error"),
        ("d_super", W10, {"flag": "gold"}, 422, "validation_error"),
        ("d_super", W10, {"org_unit": "ZZ"}, 422, "validation_error"),
    ],
)
def test_awards_refused(client, session, zone, week, username, week_text, body, status, code):
    if week_text == "this":
        week_text = iso_week(datetime.now(CHINA).date())
    response = award(client, zone, week_text, username, **body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert awards_count(session) == 0


def test_note_is_required(client, session, zone, week):
    response = client.post(
        f"/api/v1/rankings/{W10}/flags",
        json={"org_unit": "A", "flag": "red"},
        headers=zone.headers("d_super"),
    )
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert awards_count(session) == 0


def test_trend_against_the_week_before(client, zone, week):
    items = get(client, zone, "/api/v1/rankings", week=W10).json()["items"]
    trend = {i["org_unit"]: (i["rank"], i["trend"]) for i in items}
    # The week before only A had work (I4): ranked first then, second now.
    assert trend["A"] == (2, {"rank": 1, "score": trend["A"][1]["score"], "direction": "down"})
    assert trend["B"][1]["direction"] == "new" and trend["C"][1]["direction"] == "new"


def test_named_periods_and_iso_weeks_agree(client, zone, week):
    by_week = get(client, zone, "/api/v1/rankings", week=W10).json()
    by_date = get(client, zone, "/api/v1/rankings", date="2025-03-05").json()
    assert by_week["items"] == by_date["items"]
    assert by_week["period_info"]["label"] == "第10周（2025-03-03 至 2025-03-09）"
    last = get(client, zone, "/api/v1/stats", period="last_week").json()
    assert last["period"]["name"] == "last_week" and last["period"]["label"].startswith("上周（")
    assert last["period"]["kind"] == "week"
    stats_w10 = get(client, zone, "/api/v1/stats", week=W10).json()
    ranged = get(client, zone, "/api/v1/stats", **{"from": "2025-03-03", "to": "2025-03-09"})
    assert stats_w10["counts"] == ranged.json()["counts"]
    year = get(client, zone, "/api/v1/stats", **{"from": "2025-01-01", "to": "2025-12-31"})
    assert year.status_code == 200 and year.json()["period"]["name"] == "range"


def test_flag_history_of_a_unit(client, zone, week):
    assert award(client, zone, org_unit="C", flag="black", note="黑旗").status_code == 201
    body = get(
        client, zone, "/api/v1/rankings/history", org_unit="C", week="2025-W11", weeks=3
    ).json()
    assert [w["week"] for w in body["weeks"]] == ["2025-W11", "2025-W10", "2025-W09"]
    w11, w10, _w09 = body["weeks"]
    assert (w10["rank"], w10["flag"], w10["final_flag"]) == (3, "black", "black")
    assert w10["awarded"]["note"] == "黑旗"
    assert (w11["flag"], w11["final_flag"]) == (None, None)
    assert (body["red"], body["black"], body["kind"]) == (0, 1, "office")
    outside = get(client, zone, "/api/v1/rankings/history", username="b_super", org_unit="A")
    assert (outside.status_code, outside.json()["code"]) == (403, "forbidden")


def test_stats_by_source_missed_reports_and_groups(client, session, zone, week):
    grid_import.import_grid(session, grid_samples.dumps(grid_samples.zone_grid()))
    issues = session.exec(select(Issue).order_by(col(Issue.id))).all()
    # As if routed: every issue in A1G; two of them came from the 12345 hotline, one of them
    # outside the grid (no cell: not a 漏报).
    for issue in issues:
        issue.grid_cell_code = "A1G"
    issues[1].source = "12345"
    issues[2].source = "12345"
    issues[2].grid_cell_code = None
    session.add_all(issues)
    session.commit()
    body = get(client, zone, "/api/v1/stats", week=W10, group_by="grid_cell").json()
    assert body["by_source"] == {"12345": 2, "gridproof": 9}
    assert body["missed_reports"] == 1
    groups = {g["key"]: g for g in body["groups"]}
    assert set(groups) == {"A1G", None}
    assert groups["A1G"]["name"] == "远大第一网格" and groups["A1G"]["missed_reports"] == 1
    assert groups[None]["name"] == "网格外"
    assert sum(g["reported"] for g in body["groups"]) == body["counts"]["total"] == 11
    units = get(client, zone, "/api/v1/stats", week=W10, group_by="org_unit").json()["groups"]
    assert {g["key"] for g in units} == {"A", "A1G", "B", "C"}
    assert sum(g["reported"] for g in units) == 11
    cells = get(client, zone, "/api/v1/rankings", week=W10, group_by="grid_cell").json()
    ranked = {i["org_unit"]: i for i in cells["items"]}
    assert set(ranked) == {"A1G", "B1G"}
    assert ranked["A1G"]["missed_reports"] == 1 and ranked["A1G"]["rank"] == 1
    assert ranked["B1G"]["rank"] is None
