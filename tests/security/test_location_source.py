"""Where a location came from is what the server established, never the client's claim
(issue 17, item 4): a typed lat/lon sent with location_source=exif stays device or manual."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import LAT, LON, Zone, act, add_photos, jpeg, report

NO_GPS = {"lat": None, "lon": None}
# About 1.1 km north of the issue.
FAR_LAT = LAT + 0.01


def _issue(client: TestClient, zone: Zone, issue_id: int, username: str = "d_super") -> Any:
    return client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers(username)).json()


def _report_event(client: TestClient, zone: Zone, issue_id: int) -> dict[str, Any]:
    events = client.get(f"/api/v1/issues/{issue_id}/events", headers=zone.headers("d_super"))
    assert events.status_code == 200, events.text
    first: dict[str, Any] = events.json()[0]
    assert first["action"] == "report"
    return first


@pytest.mark.parametrize(("accuracy", "expected"), [(None, "manual"), ("12", "device")])
def test_a_forged_exif_claim_on_a_report_is_ignored(
    client: TestClient, zone: Zone, accuracy: str | None, expected: str
) -> None:
    form = {"lat": str(LAT), "lon": str(LON), "location_source": "exif"}
    if accuracy:
        form["accuracy_m"] = accuracy
    response = report(client, zone, photos=[jpeg(seed=7, **NO_GPS)], **form)
    assert response.status_code == 201, response.text
    issue = response.json()
    assert issue["location_source"] == expected
    assert [p["location_source"] for p in issue["photos"]] == [expected]
    assert "no_gps" in issue["photos"][0]["flags"]
    assert _report_event(client, zone, issue["id"])["data"]["location_source"] == expected


def test_a_typed_position_is_not_exif_even_when_the_photo_has_gps(
    client: TestClient, zone: Zone
) -> None:
    form = {"lat": str(LAT), "lon": str(LON), "location_source": "exif"}
    issue = report(client, zone, photos=[jpeg(seed=8)], **form).json()
    assert issue["location_source"] == "manual"  # the form's position, typed
    assert issue["photos"][0]["location_source"] == "exif"  # the photo's own GPS, read here


def test_manual_claimed_with_a_device_fix_is_device(client: TestClient, zone: Zone) -> None:
    form = {"lat": str(LAT), "lon": str(LON), "accuracy_m": "5", "location_source": "manual"}
    issue = report(client, zone, photos=[jpeg(seed=9, **NO_GPS)], **form).json()
    assert issue["location_source"] == "device"


def _dispatched_at_a_typed_spot(client: TestClient, zone: Zone) -> dict[str, Any]:
    form = {"lat": str(LAT), "lon": str(LON), "location_source": "exif"}
    issue = report(client, zone, photos=[jpeg(seed=10, **NO_GPS)], **form).json()
    response = act(client, zone, "d_super", issue, "dispatch", org_unit="A")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_far_after_photo_without_gps_claiming_exif_is_flagged_far(
    client: TestClient, zone: Zone
) -> None:
    issue = _dispatched_at_a_typed_spot(client, zone)
    form = {"lat": str(FAR_LAT), "lon": str(LON), "location_source": "exif"}
    response = add_photos(
        client, zone, "a_worker", issue["id"], "after", jpeg(seed=11, **NO_GPS), **form
    )
    assert response.status_code == 201, response.text
    (photo,) = response.json()
    assert photo["location_source"] == "manual"
    assert "far_from_issue" in photo["flags"]
    evidence = client.get(f"/api/v1/issues/{issue['id']}/evidence", headers=zone.headers("auditor"))
    after = next(p for p in evidence.json()["photos"] if p["kind"] == "after")
    assert after["distance_from_issue_m"] > 1000


def test_an_after_photo_taken_far_away_stays_far_whatever_the_form_claims(
    client: TestClient, zone: Zone
) -> None:
    issue = _dispatched_at_a_typed_spot(client, zone)
    form = {"lat": str(LAT), "lon": str(LON), "accuracy_m": "5", "location_source": "exif"}
    far_photo = jpeg(seed=12, lat=FAR_LAT, lon=LON)
    response = add_photos(client, zone, "a_worker", issue["id"], "after", far_photo, **form)
    (photo,) = response.json()
    assert photo["location_source"] == "exif"
    assert photo["lat"] == pytest.approx(FAR_LAT, abs=1e-5)
    assert {"far_from_issue", "gps_far_from_device"} <= set(photo["flags"])
    assert _issue(client, zone, issue["id"])["location_source"] == "manual"
