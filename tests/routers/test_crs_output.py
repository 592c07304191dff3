"""Coordinates on the way out: ?crs= on an issue, the list and the GeoJSON; storage stays WGS-84."""

import itertools
from typing import Any

import pytest
from sqlmodel import select

from app.models import Issue, Photo
from app.models.geo import Crs
from app.services.geo import from_wgs84, to_wgs84
from tests.factories import Zone, jpeg, report

OTHER_CRS = [Crs.GCJ02, Crs.BD09]
ENDPOINTS = ["/api/v1/issues/{id}", "/api/v1/issues", "/api/v1/issues.geojson"]


def get(client: Any, zone: Zone, path: str, **params: str) -> Any:
    response = client.get(path, params=params, headers=zone.headers("d_super"))
    assert response.status_code == 200, response.text
    return response


def stored_points(session: Any, issue_id: int) -> tuple[tuple[float, float], list[tuple]]:
    """The issue's and its photos' (lat, lon) as stored."""
    issue = session.get(Issue, issue_id)
    photos = session.exec(select(Photo.lat, Photo.lon).where(Photo.issue_id == issue_id)).all()
    point = (issue.lat, issue.lon)
    session.rollback()  # no transaction left open while the app writes (SQLite)
    return point, [tuple(p) for p in photos]


@pytest.fixture
def issues(client, zone) -> list[dict[str, Any]]:
    """Two issues: one placed by the phone (WGS-84), one by its photo's EXIF GPS."""
    by_form = report(
        client,
        zone,
        photos=[jpeg(seed=1, lat=None, lon=None)],
        lat=34.7601234,
        lon=113.6509876,
        accuracy_m=8,
    )
    by_exif = report(client, zone, photos=[jpeg(seed=2)])
    assert by_form.status_code == by_exif.status_code == 201
    return [by_form.json(), by_exif.json()]


def test_one_issue_in_each_crs(client, zone, session, issues):
    for issue in issues:
        (lat, lon), photo_points = stored_points(session, issue["id"])
        path = f"/api/v1/issues/{issue['id']}"
        default = get(client, zone, path).json()
        assert (default["lat"], default["lon"]) == pytest.approx((lat, lon), abs=1e-6)
        assert default["crs"] == "wgs84"
        assert get(client, zone, path, crs="wgs84").json() == default
        for crs in OTHER_CRS:
            body = get(client, zone, path, crs=crs.value).json()
            expected = from_wgs84(lat, lon, crs)
            assert (body["lat"], body["lon"]) == pytest.approx(expected, abs=1e-6), crs
            assert (body["lat"], body["lon"]) != pytest.approx((lat, lon), abs=1e-4)  # moved
            assert body["crs"] == crs.value
            # The photos' positions too; their raw EXIF GPS stays as the camera wrote it.
            for photo, stored, plain in zip(
                body["photos"], photo_points, default["photos"], strict=True
            ):
                assert (photo["lat"], photo["lon"]) == pytest.approx(
                    from_wgs84(*stored, crs), abs=1e-6
                )
                assert photo["exif"] == plain["exif"]
        # Storage did not move.
        assert stored_points(session, issue["id"]) == ((lat, lon), photo_points)
        assert get(client, zone, path).json()["lat"] == default["lat"]


def test_list_in_each_crs(client, zone, session, issues):
    stored = {issue["id"]: stored_points(session, issue["id"])[0] for issue in issues}
    default = {i["id"]: i for i in get(client, zone, "/api/v1/issues").json()["items"]}
    assert set(default) == set(stored)
    for issue_id, point in stored.items():
        assert (default[issue_id]["lat"], default[issue_id]["lon"]) == pytest.approx(point)
    for crs in OTHER_CRS:
        items = get(client, zone, "/api/v1/issues", crs=crs.value).json()["items"]
        assert {i["id"] for i in items} == set(stored)
        for item in items:
            expected = from_wgs84(*stored[item["id"]], crs)
            assert (item["lat"], item["lon"]) == pytest.approx(expected, abs=1e-6), crs
            assert item["crs"] == crs.value
    assert {i: stored_points(session, i)[0] for i in stored} == stored


def test_geojson_is_rfc7946_in_each_crs(client, zone, session, issues):
    stored = {issue["id"]: stored_points(session, issue["id"])[0] for issue in issues}
    first_photo = {issue["id"]: issue["photos"][0]["id"] for issue in issues}
    for crs in [None, *OTHER_CRS]:
        response = get(client, zone, "/api/v1/issues.geojson", **({"crs": crs} if crs else {}))
        assert response.headers["content-type"] == "application/geo+json"
        body = response.json()
        assert body["type"] == "FeatureCollection"
        assert "crs" not in body  # RFC 7946 §4: no crs member
        features = body["features"]
        assert {f["id"] for f in features} == set(stored)
        for feature in features:
            assert feature["type"] == "Feature"
            assert feature["geometry"]["type"] == "Point"
            lon, lat = feature["geometry"]["coordinates"]  # [lon, lat], in that order
            expected = from_wgs84(*stored[feature["id"]], crs or Crs.WGS84)
            assert (lat, lon) == pytest.approx(expected, abs=1e-6), crs
            props = feature["properties"]
            assert set(props) == {
                "id",
                "code",
                "category",
                "status",
                "overdue",
                "outside_grid",
                "thumb",
            }
            assert props["id"] == feature["id"]
            assert props["category"] == "flyposter"
            assert props["status"] == "reported"
            assert props["overdue"] is False
            assert props["outside_grid"] is False
            assert props["thumb"] == f"/api/v1/photos/{first_photo[feature['id']]}/thumb"
            assert client.get(props["thumb"], headers=zone.headers("viewer")).status_code == 200
    assert {i: stored_points(session, i)[0] for i in stored} == stored


def test_position_sent_in_gcj02_comes_back_in_gcj02(client, zone, session):
    """A phone on a Chinese base map sends GCJ-02; storage is WGS-84; asked back, the same point."""
    sent = (34.7623456, 113.7712345)
    issue = report(
        client,
        zone,
        photos=[jpeg(seed=3, lat=None, lon=None)],
        lat=sent[0],
        lon=sent[1],
        crs="gcj02",
    ).json()
    (lat, lon), _photos = stored_points(session, issue["id"])
    assert (lat, lon) == pytest.approx(to_wgs84(*sent, Crs.GCJ02), abs=1e-7)
    body = get(client, zone, f"/api/v1/issues/{issue['id']}", crs="gcj02").json()
    assert (body["lat"], body["lon"]) == pytest.approx(sent, abs=1e-6)


def test_unknown_crs_is_a_validation_error(client, zone, issues):
    for crs, endpoint in itertools.product(["epsg4326", "WGS84", "gcj-02", ""], ENDPOINTS):
        path = endpoint.format(id=issues[0]["id"])
        response = client.get(path, params={"crs": crs}, headers=zone.headers("d_super"))
        assert response.status_code == 422, (path, crs, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert problem["status"] == 422
        assert any(e["loc"][-1] == "crs" for e in problem["errors"])
