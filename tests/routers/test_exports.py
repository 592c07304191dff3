"""The ledger (问题台账): XLSX with thumbnails and CSV, filters and scope as the issue list."""

import csv
import io
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from openpyxl import load_workbook
from openpyxl.utils.escape import unescape
from python_calamine import CalamineWorkbook
from sqlalchemy import update
from sqlmodel import col

from app.models import Issue, User
from app.models.base import utcnow
from app.models.issue import TransitionRequest
from app.routers import exports as exports_router
from app.services import cells, exports
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
    "单位",
    "超期天数",
    "整改人",
    "派遣时间",
    "整改数量",
    "立行立改",
    "照片标记",
]
PICTURES = (len(HEADERS), len(HEADERS) + 1)  # the photo columns (0-based)


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
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


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
    assert {(rectified_row, PICTURES[0]), (rectified_row, PICTURES[1])} <= pictures
    assert {col for _, col in pictures} == set(PICTURES)
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
    assert reported[3] == "小广告" and reported[8] == "已上报"
    assert (reported[13], reported[14]) == ("12.5", "m²")  # a number, and its unit apart
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


# --- Formula injection (OWASP "CSV Injection") ------------------------------------------------

FORMULAS = ['=HYPERLINK("http://x","点我")', "=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]
# Not formulas, but text that XML cannot carry as is, or that looks like an OOXML escape.
AWKWARD = ["响铃\x07了", "_x0041_ 不是 A", "换行\r\n两行"]
EVIL_NAME = "=cmd|' /C calc'!A0"


@pytest.fixture
def hostile_ledger(client, zone, session):
    """Issues whose description and address look like formulas; one placed only by coordinates
    in the southern and western hemispheres, and one holding a negative quantity."""
    session.exec(
        update(User)
        .where(col(User.id) == zone.users["grid_worker"].id)
        .values(display_name=EVIL_NAME)
    )
    session.commit()
    texts = {}
    for text in FORMULAS + AWKWARD:
        response = report(client, zone, description=text, address=text + " 路口", quantity="3")
        assert response.status_code == 201, response.text
        issue = response.json()
        assert issue["description"] == text  # stored exactly as sent
        texts[issue["code"]] = text
    south = report(client, zone, description="南半球", lat="-33.8688", lon="-151.2093").json()
    negative = report(client, zone, description="负数").json()
    # The API refuses a negative quantity; a number the database holds is still written as one.
    session.exec(update(Issue).where(col(Issue.id) == negative["id"]).values(quantity=-2.5))
    session.commit()
    return {"texts": texts, "south": south["code"], "negative": negative["code"]}


def _raw_xlsx(client, zone, query=""):
    response = client.get(f"/api/v1/exports/ledger.xlsx{query}", headers=zone.headers("d_super"))
    assert response.status_code == 200, response.text
    return response.content


def test_formula_looking_text_is_a_string_cell_in_the_xlsx(client, zone, hostile_ledger):
    content = _raw_xlsx(client, zone)
    sheet = load_workbook(io.BytesIO(content)).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    by_code = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    for code, text in hostile_ledger["texts"].items():
        row = by_code[code]
        # openpyxl hands over OOXML escapes (_x000D_) undecoded; unescape is its own decoder.
        assert unescape(row[3].value) == text and row[3].data_type == "s", code
        assert unescape(row[2].value) == text + " 路口" and row[2].data_type == "s", code
        assert row[4].value == EVIL_NAME and row[4].data_type == "s"
        assert row[13].value == 3 and row[13].data_type == "n"
    south = by_code[hostile_ledger["south"]]
    assert south[2].value == "-33.868800, -151.209300"
    negative = by_code[hostile_ledger["negative"]]
    assert negative[13].value == -2.5 and negative[13].data_type == "n"
    assert negative[12].value == 0 and negative[12].data_type == "n"  # 返工次数

    # A second reader, with Excel's reading of the escapes: every text exactly as typed.
    rows = CalamineWorkbook.from_filelike(io.BytesIO(content)).get_sheet_by_index(0).to_python()
    by_code = {row[0]: row for row in rows[1:]}
    for code, text in hostile_ledger["texts"].items():
        assert by_code[code][3] == text and by_code[code][2] == text + " 路口", code
    assert by_code[hostile_ledger["negative"]][13] == -2.5


def test_formula_looking_text_is_prefixed_in_the_csv(client, zone, hostile_ledger):
    rows = _csv(client, zone)
    by_code = {row[0]: row for row in rows[1:]}
    for code, text in hostile_ledger["texts"].items():
        row = by_code[code]
        prefix = "'" if text in FORMULAS else ""
        assert row[3] == prefix + text, code
        assert row[2] == prefix + text + " 路口", code
        assert row[4] == "'" + EVIL_NAME
        assert (row[13], row[14]) == ("3", "处")  # a number, and its unit apart
    # Numbers are numbers: coordinates, a negative quantity, the rework count.
    assert by_code[hostile_ledger["south"]][2] == "-33.868800, -151.209300"
    assert by_code[hostile_ledger["negative"]][13] == "-2.5"
    assert by_code[hostile_ledger["negative"]][12] == "0"


@pytest.mark.parametrize(
    ("text", "csv_cell"),
    [
        ("=1+1", "'=1+1"),
        ("+86 138", "'+86 138"),
        ("-", "'-"),
        ("@here", "'@here"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'=1", "'=1"),  # already text to a spreadsheet
        (" =1", " =1"),
        ("1+1", "1+1"),
        ("", ""),
        ("小广告 =1", "小广告 =1"),
    ],
)
def test_csv_text(text, csv_cell):
    assert cells.csv_text(text) == csv_cell


def test_xlsx_text_escapes_only_what_xml_cannot_carry():
    assert cells.xlsx_text('=HYPERLINK("http://x","点我")') == '=HYPERLINK("http://x","点我")'
    assert cells.xlsx_text("\r=1\t\n") == "_x000D_=1\t\n"
    assert cells.xlsx_text("a\x07b\x1f") == "a_x0007_b_x001F_"
    assert cells.xlsx_text("_x0041_ _x41_ _y") == "_x005F_x0041_ _x41_ _y"
    assert unescape(cells.xlsx_text("_x0041_\r")) == "_x0041_\r"


# --- File names ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_the_file_name_has_the_zones_date(client, zone, ledger, monkeypatch, suffix):
    # 17:30 UTC on 27 November is 01:30 on 28 November in Asia/Shanghai.
    evening = datetime(2026, 11, 27, 17, 30, tzinfo=UTC)
    monkeypatch.setattr(exports_router, "utcnow", lambda: evening)
    response = client.get(f"/api/v1/exports/ledger.{suffix}", headers=zone.headers("d_super"))
    assert response.status_code == 200
    name = quote(f"问题台账-20261128.{suffix}")
    assert response.headers["content-disposition"] == (
        f"attachment; filename=\"ledger.{suffix}\"; filename*=UTF-8''{name}"
    )
