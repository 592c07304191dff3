"""The full list page is sent without validating it again (present.issue_answers): its bytes
must be exactly what the validated IssuePage would write, and its items what GET /issues/{id}
(validated) answers."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.models import Photo
from app.models.issue import IssuePage
from app.models.photo import PhotoExif, exif_answer
from app.responses import answer_json, model_json
from tests.factories import (
    Zone,
    act,
    add_photos,
    dispatched_issue,
    jpeg,
    rectified_issue,
    report,
    sample,
)

VIEWER = "d_super"


@pytest.fixture
def ledger(client: Any, zone: Zone, session: Any) -> list[int]:
    """Issues covering what an answer can hold: photos with and without EXIF GPS, a point
    placed by the phone with an integer accuracy, a deadline, a pending extension, after-photos
    and a rectified quantity, no address, stored EXIF of the wrong number type."""
    by_form = report(
        client, zone, photos=[jpeg(seed=1, lat=None, lon=None)], lat=34.76, lon=113.65, accuracy_m=8
    )
    assert by_form.status_code == 201, by_form.text
    camera = report(client, zone, photos=[sample("gps__htc_desire.jpg")], address="经开区第一大街")
    assert camera.status_code == 201, camera.text
    waiting = dispatched_issue(client, zone)
    asked = act(
        client,
        zone,
        "a_worker",
        waiting,
        "request_extension",
        deadline=(datetime.now(UTC) + timedelta(days=40)).isoformat(),
        note="材料未到",
    )
    assert asked.status_code == 200, asked.text
    rectified = rectified_issue(client, zone)
    assert add_photos(client, zone, "a_worker", waiting["id"], "after").status_code == 201
    # EXIF as an older extractor stored it: an int where a float goes, a key no model has.
    photo_id = camera.json()["photos"][0]["id"]
    odd = {"make": "HTC", "gps_alt": 12, "orientation": 1, "lens": "x"}
    session.execute(update(Photo).where(Photo.id == photo_id).values(exif=odd))
    session.commit()
    return [by_form.json()["id"], camera.json()["id"], waiting["id"], rectified["id"]]


def _page(client: Any, zone: Zone, **params: Any) -> Any:
    headers = zone.headers(VIEWER, **params.pop("headers", {}))
    response = client.get("/api/v1/issues", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"crs": "gcj02"},
        {"headers": {"Accept-Language": "en"}},
        {"limit": 2},
        {"sort": "deadline"},
    ],
    ids=["default", "gcj02", "english", "paged", "by-deadline"],
)
def test_list_bytes_are_the_validated_models(client, zone, ledger, params):
    headers = params.get("headers", {})
    response = _page(client, zone, **params)
    validated = IssuePage.model_validate_json(response.content)
    assert response.content == model_json(validated).body
    items = response.json()["items"]
    assert items, "the page shows the ledger"
    for item in items:
        detail = client.get(
            f"/api/v1/issues/{item['id']}",
            params={k: v for k, v in params.items() if k == "crs"},
            headers=zone.headers(VIEWER, **headers),
        )
        assert detail.status_code == 200, detail.text
        # Signed links carry their own expiry: equal within the same second's signing.
        assert _unsigned(item) == _unsigned(detail.json())


def test_every_kind_of_answer_is_on_the_page(client, zone, ledger):
    items = {i["id"]: i for i in _page(client, zone).json()["items"]}
    by_form, camera, waiting, rectified = (items[i] for i in ledger)
    assert by_form["accuracy_m"] == 8.0 and by_form["address"] is None
    assert waiting["extension_request"]["note"] == "材料未到" and waiting["deadline"]
    assert rectified["rectified_at"] and rectified["rectified_by"] == "a_worker"
    assert {p["kind"] for p in waiting["photos"]} == {"before", "after"}
    assert all(p["urls"]["thumb_signed"] for i in items.values() for p in i["photos"])
    # The odd stored EXIF is shown as the model writes it: its fields only, a float altitude.
    exif = camera["photos"][0]["exif"]
    assert list(exif) == list(PhotoExif.model_fields) and "lens" not in exif
    assert exif["gps_alt"] == 12.0
    assert b'"gps_alt":12.0' in _page(client, zone).content


def test_exif_answer_matches_the_model():
    for stored in [
        {},
        {"make": "Canon", "gps_lat": 34.5, "gps_lon": 113.1, "orientation": 6},
        {"gps_alt": 3, "software": "x", "unknown": [1]},
        {"orientation": True},
    ]:
        assert exif_answer(stored) == PhotoExif.model_validate(stored).model_dump(), stored
    shown = exif_answer({"gps_alt": 3})
    assert type(shown["gps_alt"]) is float


def _unsigned(answer: dict[str, Any]) -> dict[str, Any]:
    for photo in answer["photos"]:
        for key in ("thumb_signed", "large_signed"):
            photo["urls"][key] = bool(photo["urls"][key])
    return answer


def test_non_finite_numbers_are_null_as_the_model_writes_them():
    """Rows no write path makes today, but older or imported data may hold (the dicts are not
    validated on the way out, so answer_json must write what the model would)."""
    stored = {"make": "X", "gps_alt": float("inf"), "gps_lat": float("nan")}
    exif = exif_answer(stored)
    assert (
        answer_json({"exif": exif}).body
        == b'{"exif":' + PhotoExif(**stored).model_dump_json().encode() + b"}"
    )
    assert b'"gps_lat":null,"gps_lon":null,"gps_alt":null' in answer_json({"exif": exif}).body
