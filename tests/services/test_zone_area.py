"""outside_zone: a photo whose EXIF position lies outside the zone (the grid's extent, else the
zone_bbox setting) is flagged, and that position never becomes the issue's location."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, select

from app.config import Settings
from app.demo.zone import load_demo
from app.main import create_app
from app.models import Issue, Photo
from app.services import grid_import
from app.services.checks import NEEDS_OVERRIDE_NOTE, Flag
from app.services.zone_area import zone_area
from tests import grid_samples
from tests.factories import (
    LAT,
    LON,
    Zone,
    act,
    add_photos,
    assert_problem,
    dispatched_issue,
    jpeg,
    report,
    sample,
)

MILAN = sample("gps__htc_desire.jpg")  # a real phone photo, EXIF GPS 45.500667, 9.110333
PARIS = grid_samples.PARIS


def get_issue_as(client: TestClient, zone: Zone, issue_id: int, username: str) -> Any:
    response = client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def with_grid(session: Session) -> None:
    grid_import.import_grid(session, grid_samples.dumps(grid_samples.zone_grid()))


def counts(session: Session) -> tuple[int, int]:
    session.expire_all()
    issues = session.exec(select(func.count()).select_from(Issue)).one()
    photos = session.exec(select(func.count()).select_from(Photo)).one()
    session.rollback()  # end the transaction: on SQLite it holds the write lock
    return issues, photos


def test_a_far_exif_position_is_flagged_and_the_device_fix_locates_the_issue(
    client: TestClient, zone: Zone, with_grid: None
) -> None:
    response = report(client, zone, photos=[MILAN], lat=LAT, lon=LON, accuracy_m=8)
    assert response.status_code == 201, response.text
    issue = response.json()
    assert (issue["lat"], issue["lon"], issue["location_source"]) == (LAT, LON, "device")
    photo = issue["photos"][0]
    assert Flag.OUTSIDE_ZONE in photo["flags"]
    notes = {n["code"]: n["text"] for n in photo["flag_notes"]}
    assert notes[Flag.OUTSIDE_ZONE] == "照片的 GPS 位置在辖区之外（45.5007, 9.1103）"
    # The photo keeps what its camera said: that is the evidence.
    assert (round(photo["exif"]["gps_lat"], 4), photo["location_source"]) == (45.5007, "exif")


def test_a_far_exif_position_alone_is_no_location(
    client: TestClient, zone: Zone, session: Session, with_grid: None
) -> None:
    before = counts(session)
    paris = jpeg(seed=4, lat=PARIS[0], lon=PARIS[1])
    for photos in ([paris], [MILAN], [paris, MILAN]):
        refused = report(client, zone, photos=photos)
        problem = assert_problem(refused, 422, "location_required")
        assert "辖区之外" in problem["detail"]
        assert counts(session) == before
    # An EXIF position inside the zone still locates the issue, after a far one.
    located = report(client, zone, photos=[paris, jpeg(seed=5)])
    assert located.status_code == 201, located.text
    body = located.json()
    assert (body["lat"], body["lon"], body["location_source"]) == (LAT, LON, "exif")
    assert [Flag.OUTSIDE_ZONE in p["flags"] for p in body["photos"]] == [True, False]


def test_a_position_in_the_grids_margin_is_inside(
    client: TestClient, zone: Zone, with_grid: None
) -> None:
    just_south = 34.70 - 0.005  # ~550 m south of the grid's edge, within the 1000 m margin
    response = report(client, zone, photos=[jpeg(seed=6, lat=just_south, lon=113.75)])
    assert response.status_code == 201, response.text
    assert Flag.OUTSIDE_ZONE not in response.json()["flags"]
    far_south = 34.70 - 0.05  # ~5.5 km
    refused = report(client, zone, photos=[jpeg(seed=7, lat=far_south, lon=113.75)])
    assert_problem(refused, 422, "location_required")


@pytest.fixture
def bbox_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    """No grid: the zone is the zone_bbox setting."""
    boxed = Settings(
        database_url=settings.database_url,
        upload_dir=tmp_path / "boxed",
        zone_bbox="113.60,34.60,113.95,34.90",
    )
    with TestClient(create_app(boxed)) as client:
        yield client


def test_without_a_grid_the_bbox_setting_is_the_zone(
    bbox_client: TestClient, client: TestClient, zone: Zone
) -> None:
    paris = jpeg(seed=8, lat=PARIS[0], lon=PARIS[1])
    assert_problem(report(bbox_client, zone, photos=[paris]), 422, "location_required")
    chosen = report(bbox_client, zone, photos=[paris], lat=LAT, lon=LON)  # picked on the map
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["location_source"] == "manual"
    assert Flag.OUTSIDE_ZONE in chosen.json()["flags"]
    # Neither grid nor setting: no zone is known, so nothing is outside (as before).
    unbounded = report(client, zone, photos=[jpeg(seed=9, lat=PARIS[0], lon=PARIS[1])])
    assert unbounded.status_code == 201, unbounded.text
    assert Flag.OUTSIDE_ZONE not in unbounded.json()["flags"]


def test_an_after_photo_from_outside_needs_an_override_note(
    client: TestClient, zone: Zone, with_grid: None
) -> None:
    assert Flag.OUTSIDE_ZONE in NEEDS_OVERRIDE_NOTE
    issue = dispatched_issue(client, zone)
    added = add_photos(client, zone, "a_worker", issue["id"], "after", MILAN, lat=LAT, lon=LON)
    assert added.status_code == 201, added.text
    assert Flag.OUTSIDE_ZONE in added.json()[0]["flags"]
    issue = get_issue_as(client, zone, issue["id"], "a_worker")
    assert act(client, zone, "a_worker", issue, "submit_rectification").status_code == 200
    issue = get_issue_as(client, zone, issue["id"], "d_super")
    refused = act(client, zone, "d_super", issue, "verify_pass")
    problem = assert_problem(refused, 422, "override_note_required")
    assert Flag.OUTSIDE_ZONE in [f["code"] for f in problem["flags"]]


@pytest.mark.parametrize("bad", ["1,2,3", "200,0,201,1", "10,10,5,5", "a,b,c,d"])
def test_a_bad_zone_bbox_setting_is_refused_at_startup(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(zone_bbox=bad)


def test_the_demo_zone_has_an_area_around_its_issues(session: Session, settings: Settings) -> None:
    load_demo(session, settings)
    area = zone_area(session, settings)
    assert area is not None
    points = session.exec(select(Issue.lat, Issue.lon)).all()
    assert points and all(area.contains(lat, lon) for lat, lon in points)
    assert not area.contains(*PARIS)
