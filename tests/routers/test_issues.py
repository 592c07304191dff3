"""The issue API: report, location, bad input, idempotency, list, scope, errors, vocabulary."""

import base64
import hashlib
import json
import re
import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import zstandard
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.db import get_engine
from app.main import create_app
from app.models import IdempotencyRecord, Issue, IssueEvent, Photo
from app.models.base import utcnow
from app.services.geo import bd09_to_wgs84, distance_m, gcj02_to_wgs84
from tests.factories import (
    CONTRACT_CATEGORIES,
    LAT,
    LON,
    PROBLEM_JSON,
    act,
    add_photos,
    assert_problem,
    dispatched_issue,
    files,
    jpeg,
    report,
)

CODE_RE = re.compile(r"^JK-\d{8}-\d{4}$")
SHANGHAI = ZoneInfo("Asia/Shanghai")

ISSUE_FIELDS = {
    "id",
    "code",
    "category",
    "description",
    "status",
    "lat",
    "lon",
    "accuracy_m",
    "location_source",
    "address",
    "org_unit",
    "reported_by",
    "reported_at",
    "dispatched_at",
    "deadline",
    "rectified_at",
    "closed_at",
    "overdue",
    "rework_count",
    "quantity",
    "quantity_unit",
    "duplicate_of",
    "version",
    "updated_at",
    "photos",
    "allowed_actions",
}
PHOTO_FIELDS = {
    "id",
    "issue_id",
    "kind",
    "sha256",
    "content_type",
    "bytes",
    "width",
    "height",
    "taken_at",
    "uploaded_at",
    "uploaded_by",
    "exif",
    "lat",
    "lon",
    "location_source",
    "flags",
    "urls",
}


# --- helpers ---------------------------------------------------------------------------------


def rows(settings: Any, model: Any, *where: Any) -> list[Any]:
    """Rows read in a short session of their own (never holds SQLite's write lock)."""
    with Session(get_engine(settings.database_url)) as session:
        return list(session.exec(select(model).where(*where)))


def stored_files(settings: Any) -> list[str]:
    root = settings.upload_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def listed_ids(client: TestClient, zone: Any, username: str = "d_super", **params: Any) -> set[int]:
    response = client.get("/api/v1/issues", params=params, headers=zone.headers(username))
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


def assert_nothing_written(client: TestClient, zone: Any, settings: Any) -> None:
    for username in ("admin", "d_super"):
        assert listed_ids(client, zone, username) == set()
    for model in (Issue, Photo, IssueEvent, IdempotencyRecord):
        assert rows(settings, model) == [], model
    assert stored_files(settings) == []


def post_issue(
    client: TestClient,
    headers: dict[str, str],
    data: dict[str, Any],
    upload: list[tuple[str, Any]] | None = None,
) -> Any:
    return client.post("/api/v1/issues", data=data, files=upload, headers=headers)


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def as_of(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return moment


# --- reporting -------------------------------------------------------------------------------


def test_report_returns_the_created_issue(client, zone):
    photo = jpeg(seed=3)
    response = report(
        client,
        zone,
        photos=[photo],
        category="garbage",
        description="路边垃圾",
        address="经开区第三大街",
        quantity="2.5",
    )
    issue = created(response)
    assert response.headers["Location"] == f"/api/v1/issues/{issue['id']}"
    assert set(issue) >= ISSUE_FIELDS
    assert CODE_RE.match(issue["code"])
    assert issue["category"] == "garbage"
    assert issue["description"] == "路边垃圾"
    assert issue["address"] == "经开区第三大街"
    assert issue["status"] == "reported"
    assert issue["quantity"] == 2.5
    assert issue["quantity_unit"] == "m³"
    assert issue["org_unit"] == "A1G"
    assert issue["reported_by"] == "grid_worker"
    assert issue["version"] >= 1
    assert issue["rework_count"] == 0
    assert issue["overdue"] is False
    assert issue["duplicate_of"] is None
    assert issue["dispatched_at"] is None and issue["deadline"] is None
    assert issue["rectified_at"] is None and issue["closed_at"] is None
    assert abs(as_of(issue["reported_at"]) - utcnow()) < timedelta(minutes=5)
    as_of(issue["updated_at"])
    # A worker may not act on a freshly reported issue; a supervisor of the unit may.
    assert issue["allowed_actions"] == []
    as_super = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("a_super")).json()
    assert set(as_super["allowed_actions"]) == {"accept", "reject", "mark_duplicate", "dispatch"}

    [summary] = issue["photos"]
    assert set(summary) >= PHOTO_FIELDS
    assert summary["kind"] == "before"
    assert summary["issue_id"] == issue["id"]
    assert summary["sha256"] == hashlib.sha256(photo).hexdigest()
    assert summary["bytes"] == len(photo)
    assert summary["content_type"] == "image/jpeg"
    assert (summary["width"], summary["height"]) == (640, 480)
    assert summary["uploaded_by"] == "grid_worker"
    base = f"/api/v1/photos/{summary['id']}"
    assert summary["urls"] == {
        "thumb": f"{base}/thumb",
        "large": f"{base}/large",
        "original": f"{base}/original",
        # Signed links for <img src> (tests/routers/test_media_links.py).
        "thumb_signed": summary["urls"]["thumb_signed"],
        "large_signed": summary["urls"]["large_signed"],
    }
    assert summary["urls"]["thumb_signed"].startswith(f"/media/photos/{summary['id']}/thumb.jpg?")
    thumb = client.get(summary["urls"]["thumb"], headers=zone.headers("grid_worker"))
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"

    again = client.get(response.headers["Location"], headers=zone.headers("grid_worker"))
    assert again.status_code == 200
    assert again.headers["ETag"] == f'"{issue["version"]}"'
    assert again.json()["code"] == issue["code"]
    [event] = client.get(
        f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("grid_worker")
    ).json()
    assert (event["seq"], event["action"], event["to_status"]) == (1, "report", "reported")
    assert event["prev_hash"] == "0" * 64 and re.fullmatch(r"[0-9a-f]{64}", event["hash"])


def test_issue_codes_count_up_per_day(client, zone):
    first = created(report(client, zone))
    second = created(report(client, zone, "a_worker"))
    for issue in (first, second):
        assert CODE_RE.match(issue["code"]), issue["code"]
    day = as_of(first["reported_at"]).astimezone(SHANGHAI).strftime("%Y%m%d")
    assert first["code"] == f"JK-{day}-0001"
    assert second["code"] == f"JK-{day}-0002"


# --- location --------------------------------------------------------------------------------


def test_form_position_wins_over_exif(client, zone):
    device = created(report(client, zone, lat="34.7601", lon="113.7702", accuracy_m="8"))
    assert (device["lat"], device["lon"]) == (34.7601, 113.7702)
    assert device["location_source"] == "device"
    assert device["accuracy_m"] == 8.0
    manual = created(report(client, zone, lat="34.7602", lon="113.7703"))
    assert (manual["lat"], manual["lon"]) == (34.7602, 113.7703)
    assert manual["location_source"] == "manual"
    assert manual["accuracy_m"] is None


def test_without_form_position_the_first_photos_exif_gps_is_used(client, zone):
    photos = [jpeg(seed=1, lat=34.70, lon=113.70), jpeg(seed=2, lat=34.80, lon=113.80)]
    issue = created(report(client, zone, photos=photos))
    assert issue["location_source"] == "exif"
    assert issue["lat"] == pytest.approx(34.70, abs=1e-5)
    assert issue["lon"] == pytest.approx(113.70, abs=1e-5)
    assert issue["accuracy_m"] is None


def test_no_position_or_half_a_position_is_refused(client, zone, settings):
    response = report(client, zone, photos=[jpeg(lat=None, lon=None)])
    assert_problem(response, 422, "location_required")
    for half in ({"lat": "34.75"}, {"lon": "113.78"}):
        assert_problem(report(client, zone, **half), 422, "validation_error")
    assert_nothing_written(client, zone, settings)


def test_chinese_map_coordinates_are_stored_as_wgs84(client, zone, settings):
    raw_lat, raw_lon = 34.75, 113.78
    # GCJ-02 is about 500 m off WGS-84 here; BD-09 adds roughly another 700 m.
    for crs, convert, (low, high) in [
        ("gcj02", gcj02_to_wgs84, (300, 800)),
        ("bd09", bd09_to_wgs84, (800, 2000)),
    ]:
        issue = created(report(client, zone, lat=str(raw_lat), lon=str(raw_lon), crs=crs))
        expected_lat, expected_lon = convert(raw_lat, raw_lon)
        assert issue["lat"] == pytest.approx(expected_lat, abs=1e-7), crs
        assert issue["lon"] == pytest.approx(expected_lon, abs=1e-7), crs
        shift = distance_m(raw_lat, raw_lon, issue["lat"], issue["lon"])
        assert low < shift < high, (crs, shift)
        [stored] = rows(settings, Issue, Issue.id == issue["id"])
        assert (stored.lat, stored.lon) == pytest.approx((expected_lat, expected_lon), abs=1e-7)


# --- bad input leaves nothing behind ---------------------------------------------------------


BASE = {"category": "flyposter", "description": "小广告"}


def _bad_report(case: str, client: TestClient, zone: Any) -> Any:
    photo = files("photos", jpeg())
    headers = zone.headers("grid_worker")
    match case:
        case "missing_category":
            return post_issue(client, headers, {"description": "x"}, photo)
        case "unknown_category":
            return post_issue(client, headers, {**BASE, "category": "potholes"}, photo)
        case "lat_91":
            return post_issue(client, headers, {**BASE, "lat": "91", "lon": "113"}, photo)
        case "lon_181":
            return post_issue(client, headers, {**BASE, "lat": "34", "lon": "181"}, photo)
        case "lat_nan":
            return post_issue(client, headers, {**BASE, "lat": "NaN", "lon": "113"}, photo)
        case "lat_text":
            return post_issue(client, headers, {**BASE, "lat": "abc", "lon": "113"}, photo)
        case "description_2001":
            return post_issue(client, headers, {**BASE, "description": "字" * 2001}, photo)
        case "no_photos":
            return post_issue(client, headers, BASE)
        case "eleven_photos":
            blobs = [jpeg(seed=i, width=64, height=48) for i in range(11)]
            return post_issue(client, headers, BASE, files("photos", *blobs))
        case "photos_as_text":
            return post_issue(
                client, headers, {**BASE, "photos": "photo.jpg"}, files("after_photos", jpeg())
            )
        case "viewer" | "auditor":
            return post_issue(client, zone.headers(case), BASE, photo)
        case "no_token":
            return post_issue(client, {}, BASE, photo)
        case "bad_token":
            return post_issue(client, {"Authorization": "Bearer not-a-token"}, BASE, photo)
    raise AssertionError(case)


BAD_REPORTS = [
    ("missing_category", 422, "validation_error"),
    ("unknown_category", 422, "validation_error"),
    ("lat_91", 422, "validation_error"),
    ("lon_181", 422, "validation_error"),
    ("lat_nan", 422, "validation_error"),
    ("lat_text", 422, "validation_error"),
    ("description_2001", 422, "validation_error"),
    ("no_photos", 422, "validation_error"),
    ("eleven_photos", 422, "too_many_files"),
    ("photos_as_text", 422, "validation_error"),
    ("viewer", 403, "forbidden"),
    ("auditor", 403, "forbidden"),
    ("no_token", 401, "unauthenticated"),
    ("bad_token", 401, "unauthenticated"),
]


def test_bad_reports_are_refused_and_leave_nothing(client, zone, settings):
    # One zone for all cases (making users is the slow part); each case names itself on failure.
    for case, status, code in BAD_REPORTS:
        response = _bad_report(case, client, zone)
        assert response.status_code == status, (case, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON), case
        assert response.json()["code"] == code, (case, response.json())
        assert response.json()["detail"], case
    assert_nothing_written(client, zone, settings)


# --- Idempotency-Key -------------------------------------------------------------------------


def keyed_report(
    client: TestClient,
    zone: Any,
    key: str,
    username: str = "grid_worker",
    photo: bytes | None = None,
    **form: Any,
) -> Any:
    photos = [photo if photo is not None else jpeg(seed=5)]
    return report(client, zone, username, photos=photos, headers={"Idempotency-Key": key}, **form)


def test_a_retried_report_returns_the_first_issue(client, zone, settings):
    photo = jpeg(seed=5)
    first = keyed_report(client, zone, "k-1", photo=photo)
    second = keyed_report(client, zone, "k-1", photo=photo)
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["code"] == first.json()["code"]
    assert listed_ids(client, zone, "admin") == {first.json()["id"]}
    events = client.get(
        f"/api/v1/issues/{first.json()['id']}/events", headers=zone.headers("grid_worker")
    ).json()
    assert [e["action"] for e in events] == ["report"]
    assert len(rows(settings, Photo)) == 1


def test_the_same_key_for_another_request_is_a_conflict(client, zone, settings):
    photo = jpeg(seed=5)
    created(keyed_report(client, zone, "k-2", photo=photo, description="第一次"))
    other_text = keyed_report(client, zone, "k-2", photo=photo, description="第二次")
    assert_problem(other_text, 409, "idempotency_conflict")
    refused = jpeg(seed=6)
    other_bytes = keyed_report(client, zone, "k-2", photo=refused, description="第一次")
    assert_problem(other_bytes, 409, "idempotency_conflict")
    assert len(listed_ids(client, zone, "admin")) == 1
    assert len(rows(settings, Photo)) == 1
    refused_sha = hashlib.sha256(refused).hexdigest()
    assert not [name for name in stored_files(settings) if refused_sha in name]


def test_a_refused_request_does_not_use_up_its_key(client, zone, settings):
    no_gps = jpeg(lat=None, lon=None)
    refused = keyed_report(client, zone, "k-fix", photo=no_gps)
    assert_problem(refused, 422, "location_required")
    assert rows(settings, IdempotencyRecord) == []
    fixed = keyed_report(client, zone, "k-fix", photo=no_gps, lat="34.75", lon="113.78")
    assert "Idempotent-Replayed" not in fixed.headers
    assert created(fixed)["location_source"] == "manual"


def test_the_same_key_from_another_user_is_another_request(client, zone):
    photo = jpeg(seed=5)
    mine = created(keyed_report(client, zone, "shared-key", photo=photo))
    theirs = keyed_report(client, zone, "shared-key", "a_worker", photo=photo)
    assert "Idempotent-Replayed" not in theirs.headers
    assert created(theirs)["id"] != mine["id"]
    assert len(listed_ids(client, zone, "admin")) == 2


def test_idempotency_keys_survive_a_restart(client, zone, settings):
    photo = jpeg(seed=5)
    first = created(keyed_report(client, zone, "k-restart", photo=photo))
    with TestClient(create_app(settings)) as restarted:
        again = keyed_report(restarted, zone, "k-restart", photo=photo)
    assert created(again)["id"] == first["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert listed_ids(client, zone, "admin") == {first["id"]}


def keyed_photos(client: TestClient, zone: Any, issue_id: int, key: str, *blobs: bytes) -> Any:
    return client.post(
        f"/api/v1/issues/{issue_id}/photos",
        data={"kind": "before"},
        files=files("files", *blobs),
        headers=zone.headers("grid_worker", **{"Idempotency-Key": key}),
    )


def test_a_retried_photo_upload_adds_one_set_of_photos(client, zone, settings):
    issue = created(report(client, zone))
    blobs = (jpeg(seed=20), jpeg(seed=21))
    first = keyed_photos(client, zone, issue["id"], "p-1", *blobs)
    second = keyed_photos(client, zone, issue["id"], "p-1", *blobs)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    first_ids = [p["id"] for p in first.json()]
    assert len(first_ids) == 2
    assert [p["id"] for p in second.json()] == first_ids
    with TestClient(create_app(settings)) as restarted:
        third = keyed_photos(restarted, zone, issue["id"], "p-1", *blobs)
    assert [p["id"] for p in created(third)] == first_ids
    assert_problem(
        keyed_photos(client, zone, issue["id"], "p-1", jpeg(seed=22)), 409, "idempotency_conflict"
    )
    after = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("grid_worker")).json()
    assert len(after["photos"]) == 3
    events = client.get(
        f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("grid_worker")
    ).json()
    assert [e["action"] for e in events] == ["report", "add_photos"]


def _in_parallel(send: Any, times: int = 4) -> list[Any]:
    barrier = threading.Barrier(times)
    answers: list[Any] = [None] * times

    def run(n: int) -> None:
        barrier.wait()
        try:
            answers[n] = send()
        except BaseException as exc:  # recorded and asserted on below
            answers[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_concurrent_retries_of_a_report_create_one_issue(client, zone, settings):
    photo = jpeg(seed=7)
    answers = _in_parallel(lambda: keyed_report(client, zone, "k-race", photo=photo))
    assert all(not isinstance(a, BaseException) for a in answers), answers
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(listed_ids(client, zone, "admin")) == 1
    assert len(rows(settings, Photo)) == 1
    assert len(rows(settings, IssueEvent)) == 1


def test_concurrent_retries_of_a_photo_upload_add_one_set(client, zone, settings):
    issue = created(report(client, zone))
    photo = jpeg(seed=8)
    answers = _in_parallel(lambda: keyed_photos(client, zone, issue["id"], "p-race", photo))
    assert all(not isinstance(a, BaseException) for a in answers), answers
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({tuple(p["id"] for p in a.json()) for a in answers}) == 1
    assert len(rows(settings, Photo, Photo.issue_id == issue["id"])) == 2


# --- the list --------------------------------------------------------------------------------


def make_four(client: TestClient, zone: Any, settings: Any) -> dict[str, dict[str, Any]]:
    """Four issues: reported in A, accepted in A, dispatched to B and overdue, reported in B."""
    a_reported = created(report(client, zone, description="电线杆小广告"))
    a_accepted = created(
        report(
            client, zone, category="garbage", description="路边垃圾堆", lat="34.80", lon="113.90"
        )
    )
    a_accepted = act(client, zone, "a_super", a_accepted, "accept").json()
    b_overdue = dispatched_issue(client, zone, office="B")
    with Session(get_engine(settings.database_url)) as session:
        row = session.get(Issue, b_overdue["id"])
        assert row is not None
        row.deadline_at = utcnow() - timedelta(hours=1)
        session.add(row)
        session.commit()
    b_reported = created(report(client, zone, "b_worker", description="占道经营"))
    return {
        "a_reported": a_reported,
        "a_accepted": a_accepted,
        "b_overdue": b_overdue,
        "b_reported": b_reported,
    }


def test_list_filters(client, zone, settings):
    four = make_four(client, zone, settings)

    def ids(*names: str) -> set[int]:
        return {four[name]["id"] for name in names}

    def listed(**params: Any) -> set[int]:
        return listed_ids(client, zone, "d_super", **params)

    assert listed() == ids(*four)
    # status, repeatable
    assert listed(status="reported") == ids("a_reported", "b_reported")
    assert listed(status=["reported", "accepted"]) == ids("a_reported", "a_accepted", "b_reported")
    assert listed(status="dispatched") == ids("b_overdue")
    assert listed(status="closed") == set()
    # category
    assert listed(category="garbage") == ids("a_accepted")
    assert listed(category="banner") == set()
    # org_unit, with the units below it
    assert listed(org_unit="A") == ids("a_reported", "a_accepted")
    assert listed(org_unit="A1") == ids("a_reported", "a_accepted")
    assert listed(org_unit="A1G") == ids("a_reported", "a_accepted")
    assert listed(org_unit="B") == ids("b_overdue", "b_reported")
    assert listed(org_unit="D") == ids(*four)
    # overdue
    assert listed(overdue="true") == ids("b_overdue")
    assert listed(overdue="false") == ids("a_reported", "a_accepted", "b_reported")
    one = client.get(f"/api/v1/issues/{four['b_overdue']['id']}", headers=zone.headers("d_super"))
    assert one.json()["overdue"] is True
    # bbox=minLon,minLat,maxLon,maxLat
    assert listed(bbox="113.85,34.78,113.95,34.82") == ids("a_accepted")
    near = f"{LON - 0.01},{LAT - 0.01},{LON + 0.01},{LAT + 0.01}"
    assert listed(bbox=near) == ids("a_reported", "b_overdue", "b_reported")
    # updated_since (inclusive)
    assert listed(updated_since=four["b_reported"]["updated_at"]) == ids("b_reported")
    assert listed(updated_since=four["b_overdue"]["updated_at"]) == ids("b_overdue", "b_reported")
    assert listed(updated_since=(utcnow() + timedelta(hours=1)).isoformat()) == set()
    # q: description and code
    assert listed(q="垃圾") == ids("a_accepted")
    assert listed(q=four["a_reported"]["code"]) == ids("a_reported")
    assert listed(q="nothing like this") == set()
    # combined
    assert listed(org_unit="A", status="reported", q="小广告") == ids("a_reported")
    # a worker's list is scoped before filtering
    assert listed_ids(client, zone, "b_worker", org_unit="A") == set()


BAD_LIST_PARAMS: list[dict[str, Any]] = [
    {"org_unit": "NOPE"},
    {"status": "lost"},
    {"overdue": "maybe"},
    {"updated_since": "yesterday"},
    {"bbox": "1,2,3"},
    {"bbox": "1,2,3,4,5"},
    {"bbox": "a,b,c,d"},
    {"bbox": "113.9,34.8,113.8,34.7"},  # inverted
    {"bbox": "0,0,200,10"},
    {"bbox": "nan,nan,nan,nan"},
    {"limit": "0"},
    {"limit": "201"},
    {"limit": "-1"},
    {"limit": "many"},
    {"q": "x" * 101},
]


def test_bad_list_parameters_are_validation_errors(client, zone):
    for params in BAD_LIST_PARAMS:
        response = client.get("/api/v1/issues", params=params, headers=zone.headers("d_super"))
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON), params
        assert response.json()["code"] == "validation_error", params
    largest = client.get("/api/v1/issues", params={"limit": 200}, headers=zone.headers("d_super"))
    assert largest.status_code == 200
    assert largest.json()["items"] == [] and largest.json()["has_more"] is False


def test_updated_since_without_offset_is_not_a_server_error(client, zone):
    created(report(client, zone))
    response = client.get(
        "/api/v1/issues",
        params={"updated_since": "2020-01-01T00:00:00"},
        headers=zone.headers("d_super"),
    )
    # Either read as a time in some zone (the issue is newer) or refused as lacking an offset.
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert_problem(response, 422, "validation_error")
    else:
        assert len(response.json()["items"]) == 1


def test_search_text_is_literal_not_a_like_pattern(client, zone):
    created(report(client, zone, description="小广告"))
    # The issue contains neither "%" nor "_": a literal search finds nothing.
    assert listed_ids(client, zone, q="%") == set()
    assert listed_ids(client, zone, q="_") == set()


def walk(client: TestClient, zone: Any, limit: int) -> list[Any]:
    pages: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/api/v1/issues", params=params, headers=zone.headers("d_super"))
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        assert page["next_cursor"], page
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return pages
        assert len(pages) < 20


def test_keyset_pagination_returns_each_issue_once_in_order(client, zone):
    made = [created(report(client, zone, description=f"第{n}处")) for n in range(7)]
    # Touch the first one so that update order differs from creation order.
    act(client, zone, "a_super", made[0], "accept")
    pages = walk(client, zone, limit=3)
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert [p["has_more"] for p in pages] == [True, True, False]
    items = [item for page in pages for item in page["items"]]
    assert sorted(i["id"] for i in items) == sorted(i["id"] for i in made)
    keys = [(as_of(i["updated_at"]), i["id"]) for i in items]
    assert keys == sorted(keys)
    assert items[-1]["id"] == made[0]["id"]

    # Following the last page's cursor later shows only what changed since.
    last_cursor = pages[-1]["next_cursor"]
    nothing = client.get(
        "/api/v1/issues", params={"cursor": last_cursor}, headers=zone.headers("d_super")
    ).json()
    assert nothing["items"] == [] and nothing["has_more"] is False
    assert nothing["next_cursor"] == last_cursor
    changed = act(client, zone, "a_super", made[3], "accept").json()
    later = client.get(
        "/api/v1/issues", params={"cursor": last_cursor}, headers=zone.headers("d_super")
    ).json()
    assert [i["id"] for i in later["items"]] == [changed["id"]]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


TAMPERED = {
    "garbage": "not-a-cursor!!",
    "not_json": _b64(b"\xff\xfe{"),
    "wrong_shape": _b64(json.dumps({"at": "x"}).encode()),
    "three_parts": _b64(json.dumps(["2026-01-01T00:00:00+00:00", 1, 2]).encode()),
    "naive_time": _b64(json.dumps(["2026-01-01T00:00:00", 1]).encode()),
    "text_id": _b64(json.dumps(["2026-01-01T00:00:00+00:00", "1"]).encode()),
    "null": _b64(b"null"),
    "non_ascii": "游标",
}


def test_tampered_cursors_are_validation_errors(client, zone):
    created(report(client, zone))
    real = client.get(
        "/api/v1/issues", params={"limit": 1}, headers=zone.headers("d_super")
    ).json()["next_cursor"]
    for name, cursor in [*TAMPERED.items(), ("edited", real[:-3] + "!!!")]:
        response = client.get(
            "/api/v1/issues", params={"cursor": cursor}, headers=zone.headers("d_super")
        )
        assert response.status_code == 422, (name, response.text)
        assert response.json()["code"] == "validation_error", name


def test_cursor_with_an_out_of_range_id_is_a_validation_error(client, zone):
    cursor = _b64(json.dumps(["2026-01-01T00:00:00+00:00", 10**30]).encode())
    response = client.get(
        "/api/v1/issues", params={"cursor": cursor}, headers=zone.headers("d_super")
    )
    assert_problem(response, 422, "validation_error")


def test_out_of_range_issue_id_is_not_found(client, zone):
    response = client.get(f"/api/v1/issues/{10**30}", headers=zone.headers("d_super"))
    assert response.status_code in (404, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


# --- scope -----------------------------------------------------------------------------------


def test_a_worker_of_another_office_cannot_see_the_issue(client, zone):
    issue = created(report(client, zone))
    response = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("b_worker"))
    body = assert_problem(response, 404, "not_found")
    absent = client.get("/api/v1/issues/999999", headers=zone.headers("b_worker"))
    assert assert_problem(absent, 404, "not_found")["title"] == body["title"]
    assert issue["id"] not in listed_ids(client, zone, "b_worker")
    events = client.get(f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("b_worker"))
    assert_problem(events, 404, "not_found")


def test_the_reporter_sees_their_issue_after_it_moves_elsewhere(client, zone):
    issue = dispatched_issue(client, zone, office="B")
    assert issue["org_unit"] == "B"
    got = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("grid_worker"))
    assert got.status_code == 200
    assert issue["id"] in listed_ids(client, zone, "grid_worker")
    # a_worker's office no longer holds it.
    assert issue["id"] not in listed_ids(client, zone, "a_worker")


def test_district_supervisor_viewer_and_auditor_see_everything(client, zone):
    mine = created(report(client, zone))
    theirs = created(report(client, zone, "b_worker"))
    everything = {mine["id"], theirs["id"]}
    for username in ("d_super", "viewer", "auditor", "admin"):
        assert listed_ids(client, zone, username) == everything, username
        got = client.get(f"/api/v1/issues/{theirs['id']}", headers=zone.headers(username))
        assert got.status_code == 200, username
        assert got.json()["allowed_actions"] == [] or username == "d_super"
    assert listed_ids(client, zone, "a_super") == {mine["id"]}
    assert listed_ids(client, zone, "b_super") == {theirs["id"]}


def test_viewer_reads_issues_but_not_events(client, zone):
    issue = created(report(client, zone))
    assert (
        client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("viewer")).status_code
        == 200
    )
    events = client.get(f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("viewer"))
    assert_problem(events, 403, "forbidden")


def test_anyone_who_sees_an_issue_may_add_before_photos(client, zone):
    issue = created(report(client, zone))
    response = add_photos(client, zone, "a_worker", issue["id"], "before", jpeg(seed=30))
    assert response.status_code == 201, response.text
    [photo] = response.json()
    assert photo["kind"] == "before" and photo["uploaded_by"] == "a_worker"
    hidden = add_photos(client, zone, "b_worker", issue["id"], "before", jpeg(seed=31))
    assert_problem(hidden, 404, "not_found")


# --- errors ----------------------------------------------------------------------------------


def test_unknown_route_and_wrong_method_are_problem_json(client, zone):
    assert_problem(client.get("/api/v1/no-such-thing"), 404, "not_found")
    # A request that may carry a body needs a token before anything else (app/gate.py).
    assert_problem(client.post("/api/v1/issues/1/nothing"), 401, "unauthenticated")
    assert_problem(client.delete("/api/v1/issues"), 401, "unauthenticated")
    headers = zone.headers("viewer")
    assert_problem(client.post("/api/v1/issues/1/nothing", headers=headers), 404, "not_found")
    wrong = client.delete("/api/v1/issues", headers=headers)
    assert_problem(wrong, 405, "method_not_allowed")
    assert wrong.headers.get("allow")


def test_malformed_requests_are_validation_errors(client, zone):
    issue = created(report(client, zone))
    headers = zone.headers(
        "a_super", **{"If-Match": f'"{issue["version"]}"', "Content-Type": "application/json"}
    )
    url = f"/api/v1/issues/{issue['id']}/transitions"
    for body in (b'{"action": "accept",', b"", b"[1, 2]", b'{"note": "no action"}'):
        response = client.post(url, content=body, headers=headers)
        problem = assert_problem(response, 422, "validation_error")
        assert problem.get("errors"), body
    not_a_number = client.get("/api/v1/issues/abc", headers=zone.headers("d_super"))
    assert_problem(not_a_number, 422, "validation_error")
    # Nothing happened to the issue.
    again = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("a_super")).json()
    assert again["version"] == issue["version"] and again["status"] == "reported"


def test_every_issue_route_needs_a_token(client):
    routes = [
        ("GET", "/api/v1/issues"),
        ("GET", "/api/v1/issues/1"),
        ("GET", "/api/v1/issues/1/events"),
        ("POST", "/api/v1/issues/1/transitions"),
        ("GET", "/api/v1/categories"),
        ("GET", "/api/v1/org-units"),
    ]
    for method, url in routes:
        response = client.request(method, url, headers={"Authorization": "Bearer nope"})
        assert_problem(response, 401, "unauthenticated")
        assert_problem(client.request(method, url), 401, "unauthenticated")


# --- vocabulary and health -------------------------------------------------------------------


def test_vocabularies(client, zone):
    response = client.get("/api/v1/categories", headers=zone.headers("viewer"))
    assert response.status_code == 200
    by_code = {c["code"]: c for c in response.json()}
    assert set(by_code) == set(CONTRACT_CATEGORIES)
    for code, name in CONTRACT_CATEGORIES.items():
        category = by_code[code]
        assert set(category) == {"code", "name", "name_en", "group", "deadline_hours", "unit"}
        assert category["name"] == name
        assert category["name_en"] and category["group"]
        assert isinstance(category["deadline_hours"], int) and category["deadline_hours"] > 0
        assert category["unit"] in {"处", "条", "m²", "m³"}

    response = client.get("/api/v1/org-units", headers=zone.headers("viewer"))
    assert response.status_code == 200
    units = {u["code"]: u for u in response.json()}
    assert set(units) == {"D", "A", "B", "A1", "A1G", "B1"}
    for unit in units.values():
        assert set(unit) == {"code", "name", "kind", "parent_code"}
    assert units["D"] == {"code": "D", "name": "经开区", "kind": "district", "parent_code": None}
    assert units["A"] == {"code": "A", "name": "祥云办事处", "kind": "office", "parent_code": "D"}
    assert units["A1"]["kind"] == "community" and units["A1"]["parent_code"] == "A"
    assert units["A1G"]["kind"] == "grid" and units["A1G"]["parent_code"] == "A1"


def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True
    assert ready.json()["storage"] is True


def test_json_is_gzipped_for_weak_links_but_photos_are_not(client, zone):
    issue = created(report(client, zone))
    for _ in range(3):
        created(report(client, zone))
    gzip_ok = {"Accept-Encoding": "gzip"}
    listing = client.get("/api/v1/issues?limit=50", headers=zone.headers("d_super", **gzip_ok))
    assert listing.status_code == 200
    assert listing.headers["content-encoding"] == "gzip"
    assert len(listing.json()["items"]) == 4  # decoded transparently by the client
    photo_id = issue["photos"][0]["id"]
    for size in ("thumb", "original"):
        url = f"/api/v1/photos/{photo_id}/{size}"
        response = client.get(url, headers=zone.headers("d_super", **gzip_ok))
        assert response.status_code == 200
        assert "content-encoding" not in response.headers  # JPEG is compressed already


def test_json_goes_out_in_the_best_coding_the_client_takes(client, zone):
    for _ in range(4):
        created(report(client, zone))
    listing = "/api/v1/issues?limit=50"
    codings = {"gzip, deflate, br, zstd": "zstd", "gzip, br": "br", "gzip": "gzip"}
    bodies = []
    for accepted, chosen in codings.items():
        headers = zone.headers("d_super", **{"Accept-Encoding": accepted})
        response = client.get(listing, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-encoding"] == chosen
        assert "Accept-Encoding" in response.headers["vary"]
        bodies.append(json.loads(_decoded(response)))
    assert bodies[0] == bodies[1] == bodies[2] and len(bodies[0]["items"]) == 4
    ledger = client.get(
        "/api/v1/exports/ledger.csv", headers=zone.headers("d_super", **{"Accept-Encoding": "zstd"})
    )
    assert ledger.headers["content-encoding"] == "zstd"
    assert _decoded(ledger).decode("utf-8-sig").startswith("编号")


def _decoded(response) -> bytes:
    """The body; the test client decodes gzip and brotli itself, not zstd."""
    if response.headers.get("content-encoding") == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(response.content)
    return response.content


def test_the_map_and_the_ledger_take_the_lists_filters(client, zone):
    """One filter dependency: the same parameters, read the same way (a time without offset is
    the zone's wall time), on the list, the map and the ledger."""
    created(report(client, zone, description="路边小广告"))
    created(report(client, zone, description="黄土裸露"))
    query = "q=小广告&updated_since=2020-01-01T00:00:00"
    headers = zone.headers("d_super")
    listed = client.get(f"/api/v1/issues?{query}", headers=headers).json()["items"]
    geojson = client.get(f"/api/v1/issues.geojson?{query}", headers=headers).json()["features"]
    csv_text = client.get(f"/api/v1/exports/ledger.csv?{query}", headers=headers).text
    assert [i["code"] for i in listed] == [f["properties"]["code"] for f in geojson]
    assert len(listed) == 1 and listed[0]["code"] in csv_text
    assert "黄土裸露" not in csv_text
