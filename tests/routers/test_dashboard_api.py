"""GET /api/v1/stats and /api/v1/rankings over HTTP: shape, values, scope and bad input."""

from datetime import datetime, timedelta

import pytest

from app.config import Settings
from tests.services.test_stats import add_office_c, build_week, make_quick_zone

WEEK = {"from": "2025-03-03", "to": "2025-03-09"}


@pytest.fixture
def zone(session):
    return make_quick_zone(session)


@pytest.fixture
def week(session, settings, zone):
    return build_week(session, settings, zone)


def get(client, zone, path, username="d_super", **params):
    return client.get(path, params=params, headers=zone.headers(username))


def test_stats_shape_and_values(client, zone, week):
    response = get(client, zone, "/api/v1/stats", **WEEK)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "from",
        "to",
        "org_unit",
        "counts",
        "open",
        "overdue",
        "due_within_24h",
        "quantities",
        "indicators",
        "volume",
        "score",
        "grade",
    ]
    assert (body["from"], body["to"]) == ("2025-03-03T00:00:00+08:00", "2025-03-10T00:00:00+08:00")
    assert body["org_unit"] is None
    assert body["counts"]["total"] == 10
    assert body["counts"]["by_org_unit"] == {"A": 6, "A1G": 3, "B": 1}
    assert (body["open"], body["overdue"], body["due_within_24h"]) == (2, 1, 0)
    assert body["quantities"][0] == {
        "category": "bare_soil",
        "name": "黄土裸露",
        "unit": "m²",
        "quantity": 12.0,
        "rectified_quantity": 0.0,
        "issues": 1,
    }
    assert body["indicators"] == {
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
    assert (body["volume"], body["score"], body["grade"]) == (8, 82.7, "B")


def test_sunday_night_and_monday_morning_in_china(client, zone, week):
    """I6 closed Sunday 23:30 and I7 Monday 00:30, China time (both Sunday in UTC)."""
    both = get(
        client,
        zone,
        "/api/v1/stats",
        **{"from": "2025-03-09T23:00:00+08:00", "to": "2025-03-10T01:00:00+08:00"},
    ).json()
    assert [(q["category"], q["quantity"], q["issues"]) for q in both["quantities"]] == [
        ("bare_soil", 42.0, 2)
    ]
    for monday in ("2025-03-10", "2025-03-10T00:00:00+08:00"):
        body = get(client, zone, "/api/v1/stats", **{"from": monday, "to": "2025-03-16"}).json()
        assert ("bare_soil", 30.0) in [(q["category"], q["quantity"]) for q in body["quantities"]]
    # A "+" sent unencoded arrives as a space; it is read as the offset it was.
    raw = client.get(
        "/api/v1/stats?from=2025-03-10T00:00:00+08:00&to=2025-03-16",
        headers=zone.headers("d_super"),
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["from"] == "2025-03-10T00:00:00+08:00"


def test_default_period_is_this_week_in_the_zone(client, zone):
    body = get(client, zone, "/api/v1/stats", username="viewer").json()
    start = datetime.fromisoformat(body["from"])
    today = datetime.now(Settings().zone).date()
    assert start.date() == today - timedelta(days=today.weekday())
    assert start.utcoffset() == timedelta(hours=8)
    assert datetime.fromisoformat(body["to"]) - start == timedelta(days=7)
    assert body["score"] is None and body["indicators"]["closure_rate"] is None


def test_scope_b_office_and_org_unit_outside_it(client, zone, week):
    body = get(client, zone, "/api/v1/stats", username="b_super", **WEEK).json()
    assert body["counts"]["total"] == 1 and body["counts"]["by_org_unit"] == {"B": 1}
    own = get(client, zone, "/api/v1/stats", username="b_super", org_unit="B", **WEEK)
    assert own.status_code == 200 and own.json()["org_unit"] == "B"
    outside = get(client, zone, "/api/v1/stats", username="b_super", org_unit="A", **WEEK)
    assert outside.status_code == 403
    assert outside.headers["content-type"] == "application/problem+json"
    assert outside.json()["code"] == "forbidden"
    unknown = get(client, zone, "/api/v1/stats", username="b_super", org_unit="ZZ")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "validation_error")
    ranked = get(client, zone, "/api/v1/rankings", username="b_super", date="2025-03-05").json()
    assert [item["org_unit"] for item in ranked["items"]] == ["B"]


def test_rankings_flags_and_periods(client, session, settings, zone, week):
    add_office_c(session, settings, zone)
    body = get(client, zone, "/api/v1/rankings", period="week", date="2025-03-09").json()
    assert list(body) == ["period", "from", "to", "kind", "items"]
    assert (body["period"], body["kind"]) == ("week", "office")
    assert (body["from"], body["to"]) == ("2025-03-03T00:00:00+08:00", "2025-03-10T00:00:00+08:00")
    first = body["items"][0]
    assert list(first) == [
        "rank",
        "org_unit",
        "name",
        "indicators",
        "volume",
        "score",
        "grade",
        "flag",
    ]
    assert [(i["rank"], i["org_unit"], i["grade"], i["flag"]) for i in body["items"]] == [
        (1, "B", "A", "red"),
        (2, "A", "B", None),
        (3, "C", "E", "black"),
    ]
    assert first["name"] == "九龙办事处" and first["indicators"]["closure_rate"] == 1.0
    # The next week only A has work (I5 and I7 fall due on Tuesday): fewer than three, no flags.
    after = get(client, zone, "/api/v1/rankings", date="2025-03-10").json()
    assert [(i["org_unit"], i["flag"]) for i in after["items"]] == [
        ("A", None),
        ("B", None),
        ("C", None),
    ]
    assert [i["rank"] for i in after["items"]] == [1, None, None]
    month = get(client, zone, "/api/v1/rankings", period="month", date="2025-03-01").json()
    assert (month["from"], month["to"]) == (
        "2025-03-01T00:00:00+08:00",
        "2025-04-01T00:00:00+08:00",
    )
    grids = get(client, zone, "/api/v1/rankings", kind="grid", date="2025-03-09").json()
    assert [i["org_unit"] for i in grids["items"]] == ["A1G"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/stats", {"from": "2025-03-09", "to": "2025-03-03"}),
        ("/api/v1/stats", {"from": "2025-03-03T10:00:00+08:00", "to": "2025-03-03T10:00:00+08:00"}),
        ("/api/v1/stats", {"from": "yesterday"}),
        ("/api/v1/stats", {"to": "2025-02-30"}),
        ("/api/v1/stats", {"from": "0001-01-01"}),
        ("/api/v1/rankings", {"period": "year"}),
        ("/api/v1/rankings", {"date": "2025-02-30"}),
        ("/api/v1/rankings", {"date": "last week"}),
        ("/api/v1/rankings", {"kind": "district"}),
    ],
)
def test_bad_input_is_a_422_problem(client, zone, path, params):
    response = get(client, zone, path, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


def test_a_token_is_needed(client):
    for path in ("/api/v1/stats", "/api/v1/rankings"):
        response = client.get(path)
        assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
