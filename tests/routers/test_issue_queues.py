"""The lists people work from: 我的上报 (reported_by=me) and the supervisors' queue (q,
overdue, org_unit, extension_pending, sort=deadline with a cursor that neither skips nor
repeats)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col

from app.models import Issue
from tests.factories import Zone, act, assert_problem, report


def _list(client: TestClient, zone: Zone, username: str, query: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/issues?{query}", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ids(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["items"]]


def test_my_reports_are_the_callers_own_for_any_role(client: TestClient, zone: Zone) -> None:
    mine = [report(client, zone).json()["id"] for _ in range(2)]
    theirs = report(client, zone, "a_super").json()
    # Dispatched to office B, out of the grid worker's unit: still one of its reports.
    moved = act(client, zone, "d_super", {"id": mine[1], "version": 1}, "dispatch", org_unit="B")
    assert moved.status_code == 200, moved.text
    got = _list(client, zone, "grid_worker", "reported_by=me")
    assert sorted(_ids(got)) == sorted(mine)
    item = next(i for i in got["items"] if i["id"] == mine[1])
    assert (item["status"], item["org_unit"], item["deadline"] is not None) == (
        "dispatched",
        "B",
        True,
    )
    assert _ids(_list(client, zone, "a_super", "reported_by=me")) == [theirs["id"]]
    assert _ids(_list(client, zone, "d_super", "reported_by=me")) == []
    refused = client.get("/api/v1/issues?reported_by=you", headers=zone.headers("grid_worker"))
    assert_problem(refused, 422, "validation_error")


def test_queue_search_overdue_and_office(client: TestClient, zone: Zone, session: Session) -> None:
    posters = report(client, zone, description="桥下小广告").json()
    soil = report(client, zone, category="bare_soil", description="工地黄土裸露").json()
    late = act(client, zone, "d_super", soil, "dispatch", org_unit="B")
    assert late.status_code == 200, late.text
    # Its deadline passed (set in the database: the API refuses deadlines in the past).
    past = datetime.now(UTC) - timedelta(hours=1)
    session.execute(update(Issue).where(col(Issue.id) == soil["id"]).values(deadline_at=past))
    session.commit()
    assert _ids(_list(client, zone, "d_super", "q=桥下")) == [posters["id"]]
    assert _ids(_list(client, zone, "d_super", f"q={soil['code']}")) == [soil["id"]]
    assert _ids(_list(client, zone, "d_super", "org_unit=B")) == [soil["id"]]
    assert _ids(_list(client, zone, "d_super", "overdue=true")) == [soil["id"]]
    assert posters["id"] in _ids(_list(client, zone, "d_super", "overdue=false"))


def test_sort_by_deadline_nearest_first_nulls_last_across_pages(
    client: TestClient, zone: Zone
) -> None:
    now = datetime.now(UTC)
    days = [5, 1, 3, 3, 2]
    dispatched = []
    for n, offset in enumerate(days):
        issue = report(client, zone, description=f"第{n}个").json()
        deadline = (now + timedelta(days=offset)).replace(microsecond=0).isoformat()
        moved = act(client, zone, "d_super", issue, "dispatch", org_unit="A", deadline=deadline)
        assert moved.status_code == 200, moved.text
        dispatched.append(moved.json())
    undated = [report(client, zone).json()["id"] for _ in range(2)]
    want = [i["id"] for i in sorted(dispatched, key=lambda i: (i["deadline"], i["id"]))]
    want += sorted(undated)
    seen: list[int] = []
    cursor = ""
    for _ in range(10):
        body = _list(client, zone, "d_super", f"sort=deadline&limit=2{cursor}")
        seen += _ids(body)
        if not body["has_more"]:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == want
    # The same filters apply while sorting.
    office = _list(client, zone, "d_super", "sort=deadline&status=dispatched&limit=50")
    assert _ids(office) == want[:5]
    wrong_kind = client.get(
        f"/api/v1/issues?cursor={office['next_cursor']}", headers=zone.headers("d_super")
    )
    assert_problem(wrong_kind, 422, "validation_error")
    assert_problem(
        client.get("/api/v1/issues?sort=deadline&cursor=xyz", headers=zone.headers("d_super")),
        422,
        "validation_error",
    )
    assert_problem(
        client.get("/api/v1/issues?sort=oldest", headers=zone.headers("d_super")),
        422,
        "validation_error",
    )
