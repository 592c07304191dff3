"""Issue answers say where the issue is and how to get there (navigation, address_hint), and
photo answers word their flags as sentences (flag_notes) in the reader's language."""

import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from app.services.geo import EARTH_RADIUS_M, distance_m, wgs84_to_bd09, wgs84_to_gcj02
from tests.factories import LAT, LON, Zone, add_photos, dispatched_issue, jpeg, report

METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180


def _get(client: TestClient, zone: Zone, issue_id: int, **headers: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers("d_super", **headers))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def test_navigation_links_take_gcj02_for_amap_and_bd09_for_baidu(
    client: TestClient, zone: Zone
) -> None:
    issue = report(client, zone).json()
    links = issue["navigation"]
    assert links["amap"].startswith("https://uri.amap.com/marker?")
    assert links["baidu"].startswith("https://api.map.baidu.com/marker?")
    amap, baidu = _query(links["amap"]), _query(links["baidu"])
    g_lon, g_lat = (float(v) for v in amap["position"].split(","))
    b_lat, b_lon = (float(v) for v in baidu["location"].split(","))
    want_g, want_b = wgs84_to_gcj02(issue["lat"], issue["lon"]), wgs84_to_bd09(LAT, LON)
    assert distance_m(g_lat, g_lon, *want_g) < 0.5
    assert distance_m(b_lat, b_lon, *want_b) < 0.5
    # Not the WGS-84 point itself: in Zhengzhou GCJ-02 lies some hundreds of metres away.
    assert distance_m(g_lat, g_lon, issue["lat"], issue["lon"]) > 100
    assert (baidu["coord_type"], baidu["output"], baidu["src"]) == ("bd09ll", "html", "gridproof")
    assert amap["src"] == "gridproof"
    # The links name the stored point whatever coordinate system the answer is in.
    gcj = client.get(
        f"/api/v1/issues/{issue['id']}?crs=gcj02", headers=zone.headers("d_super")
    ).json()
    assert gcj["navigation"] == links


def test_address_hint_is_the_address_or_the_nearest_known_one(
    client: TestClient, zone: Zone
) -> None:
    north_120m = LAT + 120 / METRES_PER_DEGREE
    far = LAT + 5000 / METRES_PER_DEGREE
    with_address = report(client, zone, address="经开区第八大街 88 号", lat=LAT, lon=LON).json()
    assert with_address["address_hint"] == "经开区第八大街 88 号"
    nearby = report(client, zone, photos=[jpeg(seed=2, lat=north_120m)], lat=north_120m, lon=LON)
    near = nearby.json()
    assert near["address"] is None
    assert near["address_hint"] == "距 经开区第八大街 88 号 约 120 m"
    english = _get(client, zone, near["id"], **{"Accept-Language": "en"})
    assert english["address_hint"] == "about 120 m from 经开区第八大街 88 号"
    alone = report(client, zone, photos=[jpeg(seed=3, lat=far)], lat=far, lon=LON).json()
    assert alone["address_hint"] is None
    # A list page answers the same hints.
    page = client.get("/api/v1/issues?limit=200", headers=zone.headers("d_super")).json()
    hints = {item["id"]: item["address_hint"] for item in page["items"]}
    assert hints[near["id"]] == near["address_hint"] and hints[alone["id"]] is None


def test_photo_flags_come_with_their_sentences_in_the_readers_language(
    client: TestClient, zone: Zone
) -> None:
    issue = dispatched_issue(client, zone)
    far_north = LAT + 2000 / METRES_PER_DEGREE
    added = add_photos(client, zone, "a_worker", issue["id"], "after", jpeg(seed=77, lat=far_north))
    assert added.status_code == 201, added.text
    after = added.json()[0]
    assert "far_from_issue" in after["flags"]
    notes = {note["code"]: note["text"] for note in after["flag_notes"]}
    assert [n["code"] for n in after["flag_notes"]] == after["flags"]
    assert notes["far_from_issue"] == "拍摄位置距问题 2000 m"

    english = _get(client, zone, issue["id"], **{"Accept-Language": "en"})
    photo = next(p for p in english["photos"] if p["id"] == after["id"])
    assert {n["code"]: n["text"] for n in photo["flag_notes"]}["far_from_issue"] == (
        "Taken 2000 m from the issue"
    )
    one = client.get(f"/api/v1/photos/{after['id']}", headers=zone.headers("d_super")).json()
    assert one["flag_notes"] == after["flag_notes"]
    evidence = client.get(
        f"/api/v1/issues/{issue['id']}/evidence", headers=zone.headers("auditor")
    ).json()
    entry = next(p for p in evidence["photos"] if p["id"] == after["id"])
    assert entry["flag_notes"] == after["flag_notes"]
    unflagged = next(p for p in english["photos"] if p["kind"] == "before")
    assert unflagged["flags"] == [] and unflagged["flag_notes"] == []


def test_the_issue_answer_varies_by_language_under_one_etag(client: TestClient, zone: Zone) -> None:
    issue = report(client, zone).json()
    response = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("d_super"))
    assert "Accept-Language" in response.headers["vary"]
