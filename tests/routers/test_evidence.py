"""Evidence for auditors: the JSON, the streamed ZIP bundle and the before/after comparison."""

import hashlib
import io
import json
import random
import subprocess
import tracemalloc
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat
from sqlalchemy import delete, update
from sqlmodel import col

from app.models import IssueEvent
from app.routers import evidence as evidence_router
from app.services.storage import CHUNK
from tests.factories import (
    LAT,
    LON,
    SAMPLES,
    Zone,
    act,
    add_photos,
    dispatched_issue,
    jpeg,
    report,
)

EVIDENCE_PATHS = ("evidence", "evidence.zip", "comparison.jpg")
PHOTO_FIELDS = {
    "id",
    "kind",
    "sha256",
    "content_type",
    "bytes",
    "width",
    "height",
    "exif",
    "lat",
    "lon",
    "location_source",
    "flags",
    "uploaded_by",
    "uploaded_at",
    "taken_at",
    "file",
}
EXIF_FIELDS = {"make", "model", "gps_lat", "gps_lon", "gps_alt", "orientation", "software"}


# --- Helpers ---------------------------------------------------------------------------------


def url(issue_id: int, what: str) -> str:
    return f"/api/v1/issues/{issue_id}/{what}"


def get(client: Any, zone: Zone, issue_id: int, what: str, user: str = "auditor") -> Any:
    return client.get(url(issue_id, what), headers=zone.headers(user))


def read_issue(client: Any, zone: Zone, issue_id: int, user: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers(user))
    assert response.status_code == 200, response.text
    return response.json()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_hash(issue_id: int, event: dict[str, Any]) -> str:
    """An event's hash recomputed from its JSON, as the bundle's README tells an auditor to."""
    keys = ("seq", "at", "actor", "action", "from_status", "to_status", "note", "data")
    body = {"issue_id": issue_id, "prev_hash": event["prev_hash"]} | {k: event[k] for k in keys}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256(text.encode())


def assert_chain_holds(issue_id: int, events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    previous = "0" * 64
    for event in events:
        assert event["prev_hash"] == previous
        assert event["hash"] == canonical_hash(issue_id, event)
        previous = event["hash"]


def evidence_issue(client: Any, zone: Zone) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A rectified issue: two before-photos (a JPEG and a PNG), the first resubmitted as an
    after-photo and a real after-photo. Returns the issue and the uploaded bytes by SHA-256."""
    before, png, after = jpeg(seed=1), (SAMPLES / "other__exif.png").read_bytes(), jpeg(seed=99)
    issue = report(client, zone, photos=[before]).json()
    assert (
        add_photos(
            client, zone, "grid_worker", issue["id"], "before", png, lat=LAT, lon=LON
        ).status_code
        == 201
    )
    issue = read_issue(client, zone, issue["id"], "d_super")
    issue = act(client, zone, "d_super", issue, "dispatch", org_unit="A").json()
    response = add_photos(client, zone, "a_worker", issue["id"], "after", before, after)
    assert response.status_code == 201, response.text
    issue = read_issue(client, zone, issue["id"], "a_worker")
    issue = act(client, zone, "a_worker", issue, "submit_rectification").json()
    return issue, {sha256(b): b for b in (before, png, after)}


# --- GET /evidence ---------------------------------------------------------------------------


def test_evidence_json(client, zone):
    issue, uploads = evidence_issue(client, zone)
    response = get(client, zone, issue["id"], "evidence")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issue"]["id"] == issue["id"]
    assert body["issue"]["code"] == issue["code"]
    assert body["issue"]["status"] == "rectified"
    assert body["issue"]["flags"] == issue["flags"]

    photos = body["photos"]
    assert [p["kind"] for p in photos] == ["before", "before", "after", "after"]
    for p in photos:
        assert set(p) >= PHOTO_FIELDS, PHOTO_FIELDS - set(p)
        assert set(p["exif"]) >= EXIF_FIELDS
        assert p["sha256"] in uploads
        assert p["bytes"] == len(uploads[p["sha256"]])
        ext = {"image/jpeg": "jpg", "image/png": "png"}[p["content_type"]]
        assert p["file"] == f"originals/{p['sha256']}.{ext}"
        assert p["uploaded_at"]
    jpeg_before, png_before, resubmitted, real_after = photos
    assert jpeg_before["uploaded_by"] == png_before["uploaded_by"] == "grid_worker"
    assert resubmitted["uploaded_by"] == real_after["uploaded_by"] == "a_worker"
    assert jpeg_before["location_source"] == "exif"
    assert (jpeg_before["lat"], jpeg_before["lon"]) == pytest.approx((LAT, LON), abs=1e-6)
    assert jpeg_before["exif"]["gps_lat"] == pytest.approx(LAT, abs=1e-6)
    assert jpeg_before["exif"]["make"] == "Xiaomi"
    assert jpeg_before["taken_at"] is not None
    assert png_before["location_source"] in ("device", "manual")  # no EXIF GPS: the form's
    assert png_before["exif"]["gps_lat"] is None
    assert resubmitted["sha256"] == jpeg_before["sha256"]
    assert {"duplicate_photo", "after_matches_before"} <= set(resubmitted["flags"])
    assert real_after["flags"] == []

    events = body["events"]
    assert [e["action"] for e in events] == [
        "report",
        "add_photos",
        "dispatch",
        "add_photos",
        "submit_rectification",
    ]
    assert all(len(e["hash"]) == 64 for e in events)
    assert_chain_holds(issue["id"], events)
    assert body["chain_valid"] is True
    assert body["chain_problems"] == []
    assert body["as_of"] == events[-1]["at"]  # the state's time, not the request's
    # The same trail as the events endpoint.
    assert events == get(client, zone, issue["id"], "events").json()


def test_evidence_chain_valid_turns_false_after_tampering(client, zone, session):
    issue, _uploads = evidence_issue(client, zone)
    assert get(client, zone, issue["id"], "evidence").json()["chain_valid"] is True

    where = (col(IssueEvent.issue_id) == issue["id"], col(IssueEvent.seq) == 3)
    session.exec(update(IssueEvent).where(*where).values(note="派遣给B办事处"))
    session.commit()
    body = get(client, zone, issue["id"], "evidence").json()
    assert body["chain_valid"] is False
    assert body["chain_problems"] == [
        f"issue {issue['id']} event 3: hash does not match the event's content"
    ]
    # Rewriting that event's hash too only moves the break to the next link.
    tampered = next(e for e in body["events"] if e["seq"] == 3)
    rehashed = canonical_hash(issue["id"], tampered)
    session.exec(update(IssueEvent).where(*where).values(hash=rehashed))
    session.commit()
    body = get(client, zone, issue["id"], "evidence").json()
    assert body["chain_valid"] is False
    assert body["chain_problems"] == [
        f"issue {issue['id']} event 4: prev_hash does not match the previous event's hash"
    ]
    # So does deleting the last event but one.
    session.exec(
        delete(IssueEvent).where(col(IssueEvent.issue_id) == issue["id"], col(IssueEvent.seq) == 4)
    )
    session.commit()
    problems = get(client, zone, issue["id"], "evidence").json()["chain_problems"]
    assert any("event 5: expected seq 4" in p for p in problems), problems
    # The bundle says the same as the JSON.
    with zipfile.ZipFile(io.BytesIO(get(client, zone, issue["id"], "evidence.zip").content)) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["chain_valid"] is False
    assert manifest["chain_problems"] == problems


def test_the_evidence_etag_is_the_hash_of_its_body(client, zone, monkeypatch):
    """The same ETag is always the same bytes; bytes that differ never share an ETag, also
    when nothing was written (the issue turned overdue) or when someone else asks."""
    issue = report(client, zone).json()
    issue = act(client, zone, "d_super", issue, "dispatch", org_unit="A").json()
    first, again = (get(client, zone, issue["id"], "evidence") for _ in range(2))
    assert first.content == again.content  # no request time in it
    etag = first.headers["etag"]
    assert etag == again.headers["etag"] == f'"{sha256(first.content)[:32]}"'
    assert first.headers["cache-control"] == "no-cache" and "Authorization" in first.headers["vary"]
    assert first.json()["as_of"] == first.json()["events"][-1]["at"]

    cached = client.get(
        url(issue["id"], "evidence"), headers=zone.headers("auditor", **{"If-None-Match": etag})
    )
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag

    # Someone who may act on it is offered other actions: another body, another ETag.
    supervisor = get(client, zone, issue["id"], "evidence", user="d_super")
    assert supervisor.json()["issue"]["allowed_actions"] != first.json()["issue"]["allowed_actions"]
    assert supervisor.headers["etag"] != etag

    # Past the deadline, with no write in between: the body says overdue, the ETag moves.
    later = datetime.fromisoformat(issue["deadline"]) + timedelta(hours=1)
    monkeypatch.setattr(evidence_router, "utcnow", lambda: later)
    overdue = client.get(
        url(issue["id"], "evidence"), headers=zone.headers("auditor", **{"If-None-Match": etag})
    )
    assert overdue.status_code == 200 and overdue.json()["issue"]["overdue"] is True
    assert overdue.headers["etag"] == f'"{sha256(overdue.content)[:32]}"' != etag
    monkeypatch.undo()

    # A write changes the body and so the ETag; the old one gets the new answer.
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    changed = client.get(
        url(issue["id"], "evidence"), headers=zone.headers("auditor", **{"If-None-Match": etag})
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["as_of"] > first.json()["as_of"]


def test_the_bundle_is_the_same_bytes_for_the_same_state(client, zone):
    issue, _uploads = evidence_issue(client, zone)
    first, again = (get(client, zone, issue["id"], "evidence.zip") for _ in range(2))
    assert first.content == again.content
    with zipfile.ZipFile(io.BytesIO(first.content)) as bundle:
        as_of = json.loads(bundle.read("manifest.json"))["as_of"]
        assert f"as of {as_of}" in bundle.read("README.txt").decode()
        stamp = datetime.fromisoformat(as_of).replace(microsecond=0)
        stamp -= timedelta(seconds=stamp.second % 2)  # ZIP keeps even seconds
        assert {info.date_time for info in bundle.infolist()} == {stamp.timetuple()[:6]}


def test_the_comparison_answers_if_none_match_until_a_photo_is_added(client, zone, monkeypatch):
    issue = dispatched_issue(client, zone)
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    first = get(client, zone, issue["id"], "comparison.jpg")
    etag = first.headers["etag"]
    assert first.headers["content-type"] == "image/jpeg"

    def not_drawn(*args, **kwargs):
        raise AssertionError("the comparison was drawn for a 304")

    monkeypatch.setattr(evidence_router, "comparison_jpeg", not_drawn)
    cached = client.get(
        url(issue["id"], "comparison.jpg"),
        headers=zone.headers("auditor", **{"If-None-Match": etag}),
    )
    assert cached.status_code == 304 and cached.headers["etag"] == etag
    monkeypatch.undo()

    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    changed = client.get(
        url(issue["id"], "comparison.jpg"),
        headers=zone.headers("auditor", **{"If-None-Match": etag}),
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.content != first.content


# --- GET /evidence.zip -----------------------------------------------------------------------


def test_evidence_zip_contents(client, zone, tmp_path):
    issue, uploads = evidence_issue(client, zone)
    evidence = get(client, zone, issue["id"], "evidence").json()
    response = get(client, zone, issue["id"], "evidence.zip")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "content-length" not in response.headers
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="{issue["code"]}-evidence.zip"'

    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        assert bundle.testzip() is None  # every member's CRC holds
        names = bundle.namelist()
        assert len(names) == len(set(names))
        originals = {n for n in names if n.startswith("originals/")}
        assert set(names) - originals == {
            "manifest.json",
            "events.json",
            "README.txt",
            "comparison.jpg",
            "checkpoints.json",
            "public_key.pem",
            "verify_bundle.py",
        }
        # One original per distinct upload (the resubmitted before-photo is one file).
        assert originals == {p["file"] for p in evidence["photos"]}
        assert len(originals) == len(uploads) == 3
        for name in originals:
            data = bundle.read(name)
            digest = Path(name).stem
            assert sha256(data) == digest, name
            assert data == uploads[digest], name
        manifest = json.loads(bundle.read("manifest.json"))
        events = json.loads(bundle.read("events.json"))
        readme = bundle.read("README.txt").decode()
        comparison = bundle.read("comparison.jpg")
        bundle.extractall(tmp_path)

    assert manifest == evidence
    assert events == evidence["events"]
    assert_chain_holds(issue["id"], events)
    assert issue["code"] in readme and "sha256sum" in readme
    assert comparison == get(client, zone, issue["id"], "comparison.jpg").content
    with Image.open(io.BytesIO(comparison)) as img:
        assert img.format == "JPEG"
    # The README's own command checks every original.
    check = 'for f in *; do echo "${f%.*}  $f"; done | sha256sum -c'
    assert check in readme
    done = subprocess.run(
        ["bash", "-c", check], cwd=tmp_path / "originals", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 3


@pytest.fixture(scope="module")
def big_photos() -> list[bytes]:
    """Eight different ~2 MB JPEGs (noise does not compress), made once."""
    photos = []
    for seed in range(8):
        noise = random.Random(seed).randbytes(1200 * 900 * 3)
        out = io.BytesIO()
        Image.frombytes("RGB", (1200, 900), noise).save(out, "JPEG", quality=100)
        photos.append(out.getvalue())
    return photos


def test_evidence_zip_streams_with_flat_memory(client, zone, big_photos):
    total = sum(len(p) for p in big_photos)
    assert total > 15_000_000
    issue = report(client, zone, photos=big_photos, lat=LAT, lon=LON).json()
    assert len(issue["photos"]) == len(big_photos)
    # Rendered (and cached) first: the comparison's pixels are not the point here.
    assert get(client, zone, issue["id"], "comparison.jpg").status_code == 200

    tracemalloc.start()
    try:
        with client.stream(
            "GET", url(issue["id"], "evidence.zip"), headers=zone.headers("auditor")
        ) as response:
            assert response.status_code == 200
            assert "content-length" not in response.headers
            sizes = [len(chunk) for chunk in response.iter_raw()]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    streamed = sum(sizes)
    assert streamed > total  # every original is in it, stored as-is
    # Many chunks, none much larger than one read of a file.
    assert len(sizes) >= len(big_photos) * 2
    assert max(sizes) <= 2 * CHUNK, max(sizes)
    # Python memory (server and test client together) held a few chunks, never the bundle.
    assert peak < streamed / 3, (peak, streamed)
    assert peak < 5 * CHUNK, peak  # measured: ~3.4 MB for an 18 MB bundle


# --- GET /comparison.jpg ---------------------------------------------------------------------


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b.resize(a.size))).mean) / 3


def test_comparison_upright_cached_and_renewed(client, zone, settings):
    # Stored 1200×1800 with EXIF Orientation 6: shown 1800×1200, landscape.
    portrait_stored = (SAMPLES / "orient__landscape_6.jpg").read_bytes()
    issue = report(client, zone, photos=[portrait_stored], lat=LAT, lon=LON).json()
    assert (issue["photos"][0]["width"], issue["photos"][0]["height"]) == (1800, 1200)

    first = get(client, zone, issue["id"], "comparison.jpg")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(first.content)) as img:
        assert img.format == "JPEG"
        # Two panels 900 px high side by side (the after-panel a 4:3 placeholder), a 12 px gap,
        # captions below: 1350 + 12 + 1200 wide. Unrotated, the first panel would be 600 wide.
        assert img.height == 900 + 96
        assert abs(img.width - (1350 + 12 + 1200)) <= 2, img.size
        before_panel = img.convert("RGB").crop((0, 0, 1350, 900))
    with Image.open(SAMPLES / "orient__landscape_1.jpg") as upright:  # the same picture, upright
        upright_rgb = upright.convert("RGB")
        assert _mean_difference(before_panel, upright_rgb) < 12
        sideways = upright_rgb.transpose(Image.Transpose.ROTATE_90)
        assert _mean_difference(before_panel, sideways) > 3 * _mean_difference(
            before_panel, upright_rgb
        )

    cached = list((settings.upload_dir / "derived" / "comparisons").glob("*.jpg"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    second = get(client, zone, issue["id"], "comparison.jpg", user="d_super")
    assert second.content == first.content
    assert cached[0].stat().st_mtime_ns == mtime  # served from the cache, not rewritten

    issue = read_issue(client, zone, issue["id"], "d_super")
    issue = act(client, zone, "d_super", issue, "dispatch", org_unit="A").json()
    added = add_photos(client, zone, "a_worker", issue["id"], "after", jpeg(seed=5))
    assert added.status_code == 201, added.text
    third = get(client, zone, issue["id"], "comparison.jpg")
    assert third.status_code == 200
    assert third.content != first.content
    with Image.open(io.BytesIO(third.content)) as img:
        after_panel = img.convert("RGB").crop((img.width - 1200, 0, img.width, 900))
    with Image.open(io.BytesIO(jpeg(seed=5))) as after:
        assert _mean_difference(after_panel, after.convert("RGB")) < 12
    assert len(list(cached[0].parent.glob("*.jpg"))) == 2
    assert cached[0].stat().st_mtime_ns == mtime


# --- Who may pull evidence -------------------------------------------------------------------


def test_evidence_permissions(client, zone):
    issue = dispatched_issue(client, zone)  # reported by grid_worker in A1G, dispatched to A
    for path in EVIDENCE_PATHS:
        for user in ("grid_worker", "auditor", "d_super", "a_super", "admin"):
            response = get(client, zone, issue["id"], path, user=user)
            assert response.status_code == 200, (path, user, response.text)
        # Viewers read issues but never evidence.
        response = get(client, zone, issue["id"], path, user="viewer")
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "forbidden"
        # A worker who may see the issue but did not report it: the originals are not theirs.
        assert get(client, zone, issue["id"], path, user="a_worker").status_code == 403
        # Users of office B cannot see the issue at all: it does not exist for them.
        for user in ("b_worker", "b_super"):
            response = get(client, zone, issue["id"], path, user=user)
            assert response.status_code == 404, (path, user, response.text)
            assert response.json()["code"] == "not_found"
        assert get(client, zone, issue["id"] + 1000, path).status_code == 404
        assert client.get(url(issue["id"], path)).status_code == 401
