"""Routing of new issues by the grid (属地), the grid's answers, and nearby open issues."""

import pytest

from app.services import grid_import
from tests import grid_samples as samples
from tests.factories import act, assert_problem, fresh_jpeg, report


@pytest.fixture
def gridded(session, zone):
    grid_import.import_grid(session, samples.dumps(samples.zone_grid()))
    return zone


def report_at(client, zone, point, username="grid_worker", **form):
    lat, lon = point
    response = report(client, zone, username, lat=lat, lon=lon, **form)
    assert response.status_code == 201, response.text
    return response.json()


def listed(client, zone, username):
    response = client.get("/api/v1/issues", headers=zone.headers(username))
    return [i["code"] for i in response.json()["items"]]


def test_a_report_in_a_cell_goes_to_the_cells_unit(client, gridded):
    # The grid worker of A1G reports in B1G: the issue is B1's, in office B's queue.
    issue = report_at(client, gridded, samples.IN_B1G)
    assert issue["org_unit"] == "B1"
    assert issue["grid_cell"] == {"code": "B1G", "name": "毛庄第一网格"}
    assert issue["outside_grid"] is False
    assert issue["code"] in listed(client, gridded, "b_super")
    assert issue["code"] not in listed(client, gridded, "a_super")
    assert issue["code"] in listed(client, gridded, "grid_worker")  # the reporter follows it


def test_a_report_on_a_shared_edge_is_routed_the_same_way_every_time(client, gridded):
    first = report_at(client, gridded, samples.ON_SHARED_EDGE)
    second = report_at(client, gridded, samples.ON_SHARED_EDGE, username="b_worker")
    assert first["grid_cell"]["code"] == second["grid_cell"]["code"] == "A1G"
    assert first["org_unit"] == second["org_unit"] == "A1G"


def test_a_report_outside_the_grid_is_flagged_and_goes_to_the_top(client, gridded):
    issue = report_at(client, gridded, samples.PARIS, username="b_worker")
    assert issue["outside_grid"] is True
    assert issue["grid_cell"] is None
    assert issue["org_unit"] == "D"
    assert issue["code"] in listed(client, gridded, "d_super")
    assert issue["code"] not in listed(client, gridded, "b_super")


def test_without_a_grid_the_reporters_unit_keeps_the_issue(client, zone):
    issue = report_at(client, zone, samples.PARIS, username="b_worker")
    assert (issue["org_unit"], issue["grid_cell"], issue["outside_grid"]) == ("B", None, False)


def test_fixed_on_the_spot_stays_with_the_reporter_but_records_the_cell(client, gridded):
    lat, lon = samples.IN_B1G
    response = report(client, gridded, "a_worker", lat=lat, lon=lon, after=[fresh_jpeg()])
    assert response.status_code == 201, response.text
    issue = response.json()
    assert (issue["status"], issue["org_unit"]) == ("rectified", "A")
    assert issue["grid_cell"]["code"] == "B1G"


def test_an_issue_keeps_the_cell_it_was_routed_to(client, session, gridded):
    before = report_at(client, gridded, samples.IN_B1G)
    grid_import.import_grid(session, samples.dumps(samples.changed_grid()))
    after = report_at(client, gridded, samples.IN_B1G)
    old = client.get(f"/api/v1/issues/{before['id']}", headers=gridded.headers("d_super")).json()
    assert old["grid_cell"] == {"code": "B1G", "name": "毛庄第一网格"}
    assert after["grid_cell"] == {"code": "B1G", "name": "毛庄网格（调整后）"}


def test_a_supervisor_can_still_redispatch_a_routed_issue(client, gridded):
    issue = report_at(client, gridded, samples.IN_B1G)
    response = act(client, gridded, "d_super", issue, "dispatch", org_unit="A")
    assert response.status_code == 200, response.text
    assert response.json()["org_unit"] == "A"
    assert response.json()["grid_cell"]["code"] == "B1G"


def test_the_grid_is_listed_within_the_callers_scope(client, gridded):
    everything = client.get("/api/v1/grid", headers=gridded.headers("viewer")).json()
    assert [c["code"] for c in everything] == ["A", "A1", "A1G", "B", "B1", "B1G", "D"]
    office_b = client.get("/api/v1/grid", headers=gridded.headers("b_super")).json()
    assert [c["code"] for c in office_b] == ["B", "B1", "B1G"]
    b1g = office_b[2]
    assert b1g["level"] == "grid" and b1g["parent"] == "B1" and b1g["org_unit"] == "B1"
    assert b1g["bbox"] == [113.78, 34.75, 113.79, 34.76]


def test_the_grid_as_geojson_counts_open_issues(client, gridded):
    report_at(client, gridded, samples.IN_B1G)
    report_at(client, gridded, samples.IN_B1G)
    response = client.get("/api/v1/grid.geojson", headers=gridded.headers("d_super"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    features = {f["id"]: f for f in response.json()["features"]}
    assert features["B1G"]["properties"]["open_issues"] == 2
    assert features["A1G"]["properties"]["open_issues"] == 0
    assert features["B1G"]["geometry"]["type"] == "Polygon"
    gcj = client.get("/api/v1/grid.geojson?crs=gcj02", headers=gridded.headers("d_super")).json()
    assert gcj["coordinate_system"] == "gcj02"
    gcj_b1g = next(f for f in gcj["features"] if f["id"] == "B1G")
    assert gcj_b1g["geometry"]["coordinates"][0][0] != [113.78, 34.75]


def test_the_grid_needs_a_token(client, gridded):
    assert_problem(client.get("/api/v1/grid"), 401, "unauthenticated")
    assert_problem(client.get("/api/v1/grid.geojson"), 401, "unauthenticated")


def nearby(client, zone, username, **params):
    return client.get("/api/v1/issues/nearby", params=params, headers=zone.headers(username))


def test_nearby_lists_open_issues_nearest_first(client, zone):
    lat, lon = 34.75, 113.78
    far = report_at(client, zone, (lat + 0.0008, lon))  # ~89 m
    near = report_at(client, zone, (lat + 0.0002, lon))  # ~22 m
    report_at(client, zone, (lat + 0.0030, lon))  # ~334 m: outside 100 m
    other = report_at(client, zone, (lat + 0.0001, lon), category="garbage")
    answer = nearby(client, zone, "d_super", lat=lat, lon=lon, category="flyposter").json()
    assert answer["radius_m"] == 100
    assert [i["code"] for i in answer["items"]] == [near["code"], far["code"]]
    assert answer["items"][0]["distance_m"] == pytest.approx(22.2, abs=0.2)
    every = nearby(client, zone, "d_super", lat=lat, lon=lon, radius_m=500).json()["items"]
    assert [i["code"] for i in every][:2] == [other["code"], near["code"]]
    assert len(every) == 4
    assert [i["distance_m"] for i in every] == sorted(i["distance_m"] for i in every)


def test_nearby_leaves_out_ended_issues_and_keeps_to_the_callers_scope(client, zone):
    lat, lon = 34.75, 113.78
    mine = report_at(client, zone, (lat, lon))
    rejected = report_at(client, zone, (lat, lon))
    assert act(client, zone, "d_super", rejected, "reject", note="不是问题").status_code == 200
    codes = [i["code"] for i in nearby(client, zone, "a_super", lat=lat, lon=lon).json()["items"]]
    assert codes == [mine["code"]]
    assert nearby(client, zone, "b_super", lat=lat, lon=lon).json()["items"] == []
    b_own = report_at(client, zone, (lat, lon), username="b_worker")
    codes = [i["code"] for i in nearby(client, zone, "b_worker", lat=lat, lon=lon).json()["items"]]
    assert codes == [b_own["code"]]


@pytest.mark.parametrize(
    "params",
    [
        {"lat": 34.75, "lon": 113.78, "radius_m": 5001},
        {"lat": 34.75, "lon": 113.78, "radius_m": 0},
        {"lat": 91, "lon": 113.78},
        {"lat": 34.75, "lon": -181},
        {"lat": "nan", "lon": 113.78},
        {"lat": "north", "lon": 113.78},
        {"lon": 113.78},
    ],
)
def test_nearby_refuses_bad_input(client, zone, params):
    assert_problem(nearby(client, zone, "d_super", **params), 422, "validation_error")


def test_nearby_is_not_read_as_an_issue_id(client, zone):
    response = nearby(client, zone, "d_super", lat=34.75, lon=113.78, radius_m=5000)
    assert response.status_code == 200
    assert response.json()["items"] == []
