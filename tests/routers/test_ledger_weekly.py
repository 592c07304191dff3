"""The ledger as a weekly 台账: a period, numbers as numbers (read back with openpyxl and csv),
整改人, 派遣时间, 整改数量, 立行立改, 照片标记, and the summary sheet per office."""

import csv
import io

import pytest
from openpyxl import load_workbook
from sqlmodel import select

from app.models import Issue, Photo
from app.models.photo import PhotoKind
from app.services import flag_text
from app.services.ledger_extra import KIND_NAMES
from tests.routers.test_exports import HEADERS
from tests.services.test_stats import add_office_c, build_week, make_quick_zone

W10 = "2025-W10"
COLUMN = {name: index for index, name in enumerate(HEADERS)}


@pytest.fixture
def zone(session):
    return make_quick_zone(session)


@pytest.fixture
def week(session, settings, zone):
    ids = build_week(session, settings, zone)
    ids["C1"] = add_office_c(session, settings, zone)
    # I1 was rectified with a quantity, and its after-photo was taken far from the issue.
    issue = session.get(Issue, ids["I1"])
    issue.rectified_quantity = 2.5
    after = session.exec(
        select(Photo).where(Photo.issue_id == ids["I1"], Photo.kind == PhotoKind.AFTER)
    ).first()
    after.flags = ["far_from_issue"]
    after.lat, after.lon = issue.lat + 0.01, issue.lon
    session.add_all([issue, after])
    session.commit()
    return ids


def xlsx(client, zone, query, username="d_super"):
    response = client.get(f"/api/v1/exports/ledger.xlsx?{query}", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    return load_workbook(io.BytesIO(response.content))


def csv_rows(client, zone, query):
    response = client.get(f"/api/v1/exports/ledger.csv?{query}", headers=zone.headers("d_super"))
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


def codes_of(session, ids, names):
    return {session.get(Issue, ids[name]).code for name in names}


def test_the_period_cuts_the_ledger_by_reporting_time(client, session, zone, week):
    rows = csv_rows(client, zone, f"week={W10}")
    in_w10 = set(week) - {"I4"}  # I4 was reported the Thursday before
    assert {r[0] for r in rows[1:]} == codes_of(session, week, in_w10)
    ranged = csv_rows(client, zone, "from=2025-02-24&to=2025-03-02")
    assert {r[0] for r in ranged[1:]} == codes_of(session, week, ["I4"])
    # With the list's filters too.
    office_b = csv_rows(client, zone, f"week={W10}&org_unit=B")
    assert {r[0] for r in office_b[1:]} == codes_of(session, week, ["I9"])
    assert len(csv_rows(client, zone, "")) == len(week) + 1  # no period: every issue


def test_numbers_are_numbers_and_the_added_columns(client, session, zone, week):
    sheet = xlsx(client, zone, f"week={W10}&images=false")["问题台账"]
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    assert [c.value for c in sheet[1]] == HEADERS
    i1 = rows[session.get(Issue, week["I1"]).code]
    i2 = rows[session.get(Issue, week["I2"]).code]
    i3 = rows[session.get(Issue, week["I3"]).code]
    i11 = rows[session.get(Issue, week["I11"]).code]
    for row in (i1, i2, i3):
        for name in ("数量", "超期天数", "返工次数"):
            assert row[COLUMN[name]].data_type == "n", name
    assert i1[COLUMN["整改数量"]].value == 2.5 and i1[COLUMN["整改数量"]].data_type == "n"
    assert i1[COLUMN["数量"]].value == 3 and i1[COLUMN["单位"]].value == "处"
    assert i2[COLUMN["返工次数"]].value == 1
    # I2's redone fix came 03-07 10:00, 16 hours after its deadline (03-06 18:00).
    assert i2[COLUMN["超期天数"]].value == 0.7 and i1[COLUMN["超期天数"]].value == 0
    assert i3[COLUMN["超期天数"]].value > 365  # still undone, deadline 2025-03-07
    assert i1[COLUMN["整改人"]].value == "a_worker"
    assert i1[COLUMN["派遣时间"]].value.strftime("%m-%d %H:%M") == "03-03 10:00"
    assert (i1[COLUMN["立行立改"]].value, i11[COLUMN["立行立改"]].value) == ("否", "是")
    after = session.exec(
        select(Photo).where(Photo.issue_id == week["I1"], Photo.kind == PhotoKind.AFTER)
    ).first()
    issue = session.get(Issue, week["I1"])
    sentence = flag_text.sentence("far_from_issue", flag_text.facts_of(after, issue.lat, issue.lon))
    assert i1[COLUMN["照片标记"]].value == f"{KIND_NAMES[PhotoKind.AFTER]}：{sentence}"
    assert "拍摄位置距问题 1112 m" in sentence
    # The CSV holds the same numbers, as numbers.
    by_code = {r[0]: r for r in csv_rows(client, zone, f"week={W10}")}
    csv_i2 = by_code[session.get(Issue, week["I2"]).code]
    assert float(csv_i2[COLUMN["超期天数"]]) == 0.7 and int(csv_i2[COLUMN["返工次数"]]) == 1
    csv_i1 = by_code[issue.code]
    assert (csv_i1[COLUMN["数量"]], csv_i1[COLUMN["整改数量"]]) == ("3", "2.5")
    assert csv_i1[COLUMN["照片标记"]] == i1[COLUMN["照片标记"]].value


def test_the_summary_sheet_per_office(client, session, zone, week):
    award = {"org_unit": "A", "flag": "red", "note": "督查认定"}
    made = client.post(f"/api/v1/rankings/{W10}/flags", json=award, headers=zone.headers("d_super"))
    assert made.status_code == 201
    book = xlsx(client, zone, f"week={W10}")
    assert book.sheetnames == ["问题台账", "汇总"]
    summary = book["汇总"]
    rows = list(summary.iter_rows(values_only=True))
    assert rows[0][0] == "各单位汇总 · 第10周（2025-03-03 至 2025-03-09）"
    header = rows[1]
    assert header[:5] == ("单位", "上报数", "应结案", "已结案", "结案率")
    ranking = client.get(f"/api/v1/rankings?week={W10}", headers=zone.headers("d_super")).json()
    flags = {"red": "红旗", "black": "黑旗", None: None}
    expected = [
        (
            i["name"],
            i["reported"],
            i["indicators"]["due"],
            i["indicators"]["closed"],
            i["indicators"]["closure_rate"],
            i["indicators"]["on_time_closure_rate"],
            i["indicators"]["rework_rate"],
            i["indicators"]["overdue_open"],
            i["score"],
            i["grade"],
            i["rank"],
            flags[i["final_flag"]],
            flags[i["flag"]],
        )
        for i in ranking["items"]
    ]
    assert rows[2:] == expected
    assert [r[0] for r in rows[2:]] == ["九龙办事处", "祥云办事处", "潮河办事处"]
    assert rows[3][11:] == ("红旗", None)  # awarded to A; the computed suggestion stays
    assert rows[2][11:] == (None, "红旗")
    cells = next(iter(summary.iter_rows(min_row=3, max_row=3)))
    assert cells[4].data_type == "n" and cells[4].number_format == "0.0%"
    # Every report of W10 (all but I4) counts for its office; A1G's count for A, above it.
    assert sum(r[1] for r in rows[2:]) == len(week) - 1


@pytest.mark.parametrize(
    "query",
    [
        "from=2025-03-09&to=2025-03-01",
        "from=2024-01-01&to=2025-03-01",
        "week=2025-W60",
        "week=W10",
        "period=last_year",
        "period=last_week&week=2025-W10",
    ],
)
def test_a_bad_period_is_a_422_and_sends_nothing(client, zone, query):
    for suffix in ("xlsx", "csv"):
        response = client.get(
            f"/api/v1/exports/ledger.{suffix}?{query}", headers=zone.headers("d_super")
        )
        assert response.status_code == 422, (suffix, query, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"
    # No export slot was left taken: the limit still lets the next exports through.
    for _ in range(3):
        ok = client.get("/api/v1/exports/ledger.csv", headers=zone.headers("d_super"))
        assert ok.status_code == 200
