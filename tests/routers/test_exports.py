"""The ledger (问题台账): XLSX with thumbnails and CSV, filters and scope as the issue list."""

import csv
import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from app.models import User
from app.models.base import utcnow
from app.models.issue import TransitionRequest
from app.services import exports
from app.services import issues as issue_service
from tests.factories import dispatched_issue, rectified_issue, report

HEADERS = [
    "编号",
    "类别",
    "位置",
    "问题描述",
    "上报人",
    "上报时间",
    "责任单位",
    "整改时限",
    "状态",
    "整改完成时间",
    "核查人",
    "是否超期",
    "返工次数",
    "数量",
]


@pytest.fixture
def ledger(client, zone, session, settings):
    """Four issues: reported, dispatched, overdue, rectified (with an after-photo)."""
    reported = report(client, zone, quantity="12.5", category="bare_soil").json()
    dispatched = dispatched_issue(client, zone)
    overdue = report(client, zone, description="逾期未整改").json()
    past = utcnow() - timedelta(days=3)
    request = TransitionRequest(action="dispatch", org_unit="A", deadline=past + timedelta(hours=2))
    supervisor = session.get(User, zone.users["d_super"].id)
    issue_service.apply_transition(
        session, settings, supervisor, overdue["id"], request, version=1, now=past
    )
    rectified = rectified_issue(client, zone)
    return {
        "reported": reported,
        "dispatched": dispatched,
        "overdue": overdue,
        "rectified": rectified,
    }


def _xlsx(client, zone, username="d_super", query=""):
    response = client.get(f"/api/v1/exports/ledger.xlsx{query}", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    return load_workbook(io.BytesIO(response.content)).active


def _csv(client, zone, username="d_super", query=""):
    response = client.get(f"/api/v1/exports/ledger.csv{query}", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_the_xlsx_has_a_row_per_issue_and_their_thumbnails(client, zone, ledger):
    sheet = _xlsx(client, zone)
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [*HEADERS, "整改前照片", "整改后照片"]
    by_code = {row[0]: row for row in rows[1:]}
    assert set(by_code) == {issue["code"] for issue in ledger.values()}
    assert by_code[ledger["overdue"]["code"]][8:12] == ("整改中", None, None, "是")
    assert by_code[ledger["reported"]["code"]][1] == "黄土裸露"
    assert by_code[ledger["reported"]["code"]][13] == 12.5
    assert by_code[ledger["reported"]["code"]][11] == "否"
    rectified = by_code[ledger["rectified"]["code"]]
    assert rectified[8] == "待核查" and rectified[9] is not None
    assert rectified[6] == "祥云办事处"

    # A before-photo for every issue, an after-photo for the rectified one, each in its row.
    pictures = {(p.anchor._from.row, p.anchor._from.col) for p in sheet._images}
    assert len(sheet._images) == 5
    codes = [row[0] for row in rows]
    rectified_row = codes.index(ledger["rectified"]["code"])
    assert (rectified_row, 14) in pictures and (rectified_row, 15) in pictures
    assert {col for _, col in pictures} == {14, 15}
    assert all(p.format == "jpeg" for p in sheet._images)


def test_the_xlsx_reads_the_issues_in_batches(client, zone, ledger, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 1)
    sheet = _xlsx(client, zone)
    assert sheet.max_row == 5 and len(sheet._images) == 5


def test_the_xlsx_without_pictures(client, zone, ledger):
    sheet = _xlsx(client, zone, query="?images=false")
    assert [c.value for c in sheet[1]] == HEADERS
    assert sheet.max_row == 5 and sheet._images == []


def test_the_csv_has_the_same_columns(client, zone, ledger):
    rows = _csv(client, zone)
    assert rows[0] == HEADERS
    assert len(rows) == 5
    reported = next(r for r in rows if r[0] == ledger["reported"]["code"])
    assert reported[3] == "小广告" and reported[8] == "已上报" and reported[13] == "12.5 m²"
    assert reported[5].count(":") == 1  # 2026-11-27 09:30, in the zone's time


def test_the_ledger_takes_the_filters_of_the_list(client, zone, ledger):
    rows = _csv(client, zone, query="?status=dispatched")
    assert sorted(r[0] for r in rows[1:]) == sorted(
        [ledger["dispatched"]["code"], ledger["overdue"]["code"]]
    )
    rows = _csv(client, zone, query="?overdue=true")
    assert [r[0] for r in rows[1:]] == [ledger["overdue"]["code"]]
    sheet = _xlsx(client, zone, query="?category=bare_soil")
    assert sheet.max_row == 2 and len(sheet._images) == 1
    assert _csv(client, zone, query="?q=逾期")[1][0] == ledger["overdue"]["code"]


def test_the_ledger_keeps_to_the_readers_scope(client, zone, ledger):
    assert len(_csv(client, zone, "b_worker")) == 1  # headers only: nothing in office B
    assert len(_csv(client, zone, "a_worker")) == 5  # all in office A or its grid
    assert len(_csv(client, zone, "viewer")) == 5
    assert _xlsx(client, zone, "b_super").max_row == 1


def test_the_ledger_revalidates_and_refuses_strangers(client, zone, ledger):
    first = client.get("/api/v1/exports/ledger.csv", headers=zone.headers("viewer"))
    again = client.get(
        "/api/v1/exports/ledger.csv",
        headers=zone.headers("viewer", **{"If-None-Match": first.headers["etag"]}),
    )
    assert again.status_code == 304
    assert client.get("/api/v1/exports/ledger.xlsx").status_code == 401
    bad = client.get("/api/v1/exports/ledger.csv?status=nonsense", headers=zone.headers("viewer"))
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
