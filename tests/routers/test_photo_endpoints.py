"""Photos through the HTTP API: upload and refusal, derivatives, originals, who may read what.

Every test runs on SQLite and on PostgreSQL (the `client`/`zone` fixtures are parametrised).
"""

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageChops, ImageStat
from sqlmodel import Session, select

from app.config import MB, Settings
from app.main import create_app
from app.models import Issue, IssueEvent, Photo
from app.services import decoders
from app.services.claims import Claim
from app.services.objects import open_store
from app.services.storage import Storage
from tests.factories import (
    LAT,
    LON,
    SAMPLES,
    Zone,
    act,
    add_photos,
    assert_problem,
    dispatched_issue,
    jpeg,
    report,
    sample,
)
from tests.stored import derivative_file, original_file, photo_files

IMMUTABLE = "private, max-age=31536000, immutable"
CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "heic": "image/heic",
    "webp": "image/webp",
    "avif": "image/avif",
    "png": "image/png",
    "gif": "image/gif",
    "tif": "image/tiff",
}

# --- helpers ----------------------------------------------------------------------------------


def stored_files(settings: Settings) -> list[Path]:
    root = settings.upload_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def rows(session: Session, model: Any) -> list[Any]:
    session.rollback()  # a fresh transaction sees what the app committed …
    found = list(session.exec(select(model)).all())
    session.rollback()  # … and must not hold SQLite's lock while the app writes
    return found


def assert_nothing_left(
    client: TestClient, zone: Zone, session: Session, settings: Settings
) -> None:
    """The refused request left no issue, photo or event row, and no file anywhere."""
    listed = client.get("/api/v1/issues", headers=zone.headers("d_super"))
    assert listed.status_code == 200
    assert listed.json()["items"] == []
    assert rows(session, Issue) == []
    assert rows(session, Photo) == []
    assert rows(session, IssueEvent) == []
    assert stored_files(settings) == []


def upload(name: str, data: bytes | None = None, field: str = "photos") -> tuple[str, Any]:
    data = sample(name) if data is None else data
    content_type = CONTENT_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return field, (name, io.BytesIO(data), content_type)


def post_issue(
    client: TestClient,
    zone: Zone,
    uploads: list[tuple[str, Any]],
    username: str = "grid_worker",
    **form: Any,
) -> Any:
    data = {"category": "flyposter", "description": "小广告", **form}
    return client.post("/api/v1/issues", data=data, files=uploads, headers=zone.headers(username))


def reported_photo(client: TestClient, zone: Zone, name: str, **form: Any) -> dict[str, Any]:
    response = post_issue(client, zone, [upload(name)], **form)
    assert response.status_code == 201, response.text
    issue: dict[str, Any] = response.json()
    return issue


def grey_small(image: Image.Image) -> Image.Image:
    return image.convert("L").resize((96, 64))


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(a, b)).mean[0])


def events(client: TestClient, zone: Zone, issue_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/issues/{issue_id}/events", headers=zone.headers("d_super"))
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


# --- 1: real samples through POST /api/v1/issues --------------------------------------------------

ACCEPTED = {
    # name: (content type, EXIF GPS or None)
    "gps__htc_desire.jpg": ("image/jpeg", (45.500667, 9.110333)),
    "heic__apple_iphone8_gps.heic": ("image/heic", (23.177917, 113.394317)),
    "other__htc_desire_gps.webp": ("image/webp", (45.500667, 9.110333)),
    "other__exif.avif": ("image/avif", None),
    "other__exif.png": ("image/png", None),
}


def test_real_samples_are_accepted(
    client: TestClient, zone: Zone, settings: Settings, subtests: pytest.Subtests
) -> None:
    storage = Storage(settings.upload_dir)
    for name, (content_type, gps) in ACCEPTED.items():
        with subtests.test(msg=name):
            data = sample(name)
            form = {} if gps else {"lat": LAT, "lon": LON}
            response = post_issue(client, zone, [upload(name)], **form)
            assert response.status_code == 201, response.text
            issue = response.json()
            [photo] = issue["photos"]
            assert photo["sha256"] == hashlib.sha256(data).hexdigest()
            assert photo["bytes"] == len(data)
            assert photo["content_type"] == content_type
            assert photo["kind"] == "before"
            assert photo["uploaded_by"] == "grid_worker"
            urls = dict(photo["urls"])
            signed = {k: urls.pop(k) for k in ("thumb_signed", "large_signed")}
            assert urls == {
                "thumb": f"/api/v1/photos/{photo['id']}/thumb",
                "large": f"/api/v1/photos/{photo['id']}/large",
                "original": f"/api/v1/photos/{photo['id']}/original",
            }
            for size in ("thumb", "large"):
                assert signed[f"{size}_signed"].startswith(
                    f"/media/photos/{photo['id']}/{size}.jpg?expires="
                )
            if gps:
                assert issue["location_source"] == "exif"
                assert (issue["lat"], issue["lon"]) == pytest.approx(gps, abs=1e-5)
                exif_gps = (photo["exif"]["gps_lat"], photo["exif"]["gps_lon"])
                assert exif_gps == pytest.approx(gps, abs=1e-5)
                assert (photo["lat"], photo["lon"]) == pytest.approx(gps, abs=1e-5)
                assert photo["location_source"] == "exif"
            else:
                assert issue["location_source"] == "manual"
                assert (issue["lat"], issue["lon"]) == pytest.approx((LAT, LON))
                assert photo["exif"]["gps_lat"] is None and photo["exif"]["gps_lon"] is None
                assert (photo["lat"], photo["lon"]) == pytest.approx((LAT, LON))
            sha = photo["sha256"]
            assert original_file(storage.root, sha).read_bytes() == data
            assert derivative_file(storage.root, sha, "thumb").is_file()
            assert derivative_file(storage.root, sha, "large").is_file()
            got = client.get(f"/api/v1/photos/{photo['id']}", headers=zone.headers("grid_worker"))
            assert got.status_code == 200
            assert got.json() == photo
    assert len(stored_files(settings)) == 3 * len(ACCEPTED)  # nothing else, no temp file


def test_format_comes_from_the_bytes_not_the_declared_type(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    as_png = [("photos", ("x.png", io.BytesIO(jpeg()), "image/png"))]
    response = post_issue(client, zone, as_png)
    assert response.status_code == 201, response.text
    assert response.json()["photos"][0]["content_type"] == "image/jpeg"
    files_before = stored_files(settings)
    gif = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(gif, "GIF")
    as_jpeg = [("photos", ("photo.jpg", io.BytesIO(gif.getvalue()), "image/jpeg"))]
    assert_problem(
        post_issue(client, zone, as_jpeg, lat=LAT, lon=LON), 415, "unsupported_media_type"
    )
    assert stored_files(settings) == files_before


REFUSED = {
    "hostile__oom.tif": (415, "unsupported_media_type"),
    "hostile__decompression_bomb.gif": (415, "unsupported_media_type"),
    "hostile__heic_200MP_bomb.heic": (422, "image_too_many_pixels"),
    "gps__google_pixel6_ultrahdr_truncated.jpg": (422, "image_unreadable"),
    "hostile__truncated_jpeg.jpg": (422, "image_unreadable"),
    "hostile__heic_truncated.heic": (422, "image_unreadable"),
    "hostile__heic_corrupted.heic": (422, "image_unreadable"),
    "hostile__empty_file.jpg": (415, "unsupported_media_type"),
}


def test_hostile_samples_are_refused_and_leave_nothing(
    client: TestClient,
    zone: Zone,
    session: Session,
    settings: Settings,
    subtests: pytest.Subtests,
) -> None:
    for name, (status, code) in REFUSED.items():
        with subtests.test(msg=name):
            response = post_issue(client, zone, [upload(name)], lat=LAT, lon=LON)
            assert_problem(response, status, code)
            assert_nothing_left(client, zone, session, settings)


def test_the_server_decodes_in_its_pool_of_processes(
    zone: Zone, session: Session, settings: Settings
) -> None:
    """As `gridproof serve` runs it: photos decoded by a pool of processes that the app starts
    with itself and stops with itself; refusals and clean-up as in the request's own thread."""
    pooled = settings.model_copy(update={"image_processes": 2})
    with TestClient(create_app(pooled)) as client:
        processes = list(decoders._pools[2]._processes.values())
        assert len(processes) == 2 and all(p.is_alive() for p in processes)
        bad = [upload("good.jpg", jpeg(seed=41)), upload("hostile__truncated_jpeg.jpg")]
        assert_problem(post_issue(client, zone, bad), 422, "image_unreadable")
        assert_nothing_left(client, zone, session, pooled)
        good = post_issue(client, zone, [upload("gps__apple_iphone6_hdr.jpg")])
        assert good.status_code == 201, good.text
        photo = good.json()["photos"][0]
        assert photo["exif"]["make"] == "Apple" and photo["width"] > 0
        thumb = client.get(photo["urls"]["thumb"], headers=zone.headers("grid_worker"))
        assert thumb.status_code == 200 and thumb.content.startswith(b"\xff\xd8")
    assert 2 not in decoders._pools
    assert not any(p.is_alive() for p in processes)


# --- 2: one bad photo among several writes nothing


def test_one_bad_photo_among_good_ones_writes_nothing(
    client: TestClient,
    zone: Zone,
    session: Session,
    settings: Settings,
    subtests: pytest.Subtests,
) -> None:
    for bad_at in (0, 1, 2):
        with subtests.test(msg=f"bad photo at position {bad_at}"):
            uploads = [upload("good-1.jpg", jpeg(seed=31)), upload("good-2.jpg", jpeg(seed=32))]
            uploads.insert(bad_at, upload("hostile__truncated_jpeg.jpg"))
            assert_problem(post_issue(client, zone, uploads), 422, "image_unreadable")
            assert_nothing_left(client, zone, session, settings)
    with subtests.test(msg="bad after-photo"):
        uploads = [
            upload("before.jpg", jpeg(seed=33)),
            upload("after.jpg", jpeg(seed=34), field="after_photos"),
            upload("hostile__oom.tif", field="after_photos"),
        ]
        assert_problem(post_issue(client, zone, uploads), 415, "unsupported_media_type")
        assert_nothing_left(client, zone, session, settings)
    with subtests.test(msg="location_required after both photos were stored"):
        uploads = [
            upload("a.jpg", jpeg(seed=35, lat=None, lon=None)),
            upload("b.jpg", jpeg(seed=36, lat=None, lon=None)),
        ]
        assert_problem(post_issue(client, zone, uploads), 422, "location_required")
        assert_nothing_left(client, zone, session, settings)


def test_failed_request_keeps_files_of_committed_photos(
    client: TestClient, zone: Zone, session: Session, settings: Settings
) -> None:
    shared = jpeg(seed=37)
    first = post_issue(client, zone, [upload("shared.jpg", shared)])
    assert first.status_code == 201, first.text
    before = stored_files(settings)
    assert len(before) == 3
    again = post_issue(
        client,
        zone,
        [
            upload("shared.jpg", shared),
            upload("new.jpg", jpeg(seed=38)),
            upload("hostile__truncated_jpeg.jpg"),
        ],
    )
    assert_problem(again, 422, "image_unreadable")
    assert stored_files(settings) == before
    assert len(rows(session, Photo)) == 1
    photo_id = first.json()["photos"][0]["id"]
    original = client.get(f"/api/v1/photos/{photo_id}/original", headers=zone.headers("d_super"))
    assert original.status_code == 200
    assert original.content == shared


def test_failed_request_keeps_files_a_request_in_progress_claims(
    client: TestClient, zone: Zone, session: Session, settings: Settings
) -> None:
    """A report that fails after its photo was stored (no location), while another request in
    progress holds a claim on the same bytes: the files stay for that one; once it gives up
    too, they go."""
    data = jpeg(seed=39, lat=None, lon=None)
    sha = hashlib.sha256(data).hexdigest()
    other = Claim(settings, open_store(settings))
    other.add(sha)

    assert_problem(post_issue(client, zone, [upload("a.jpg", data)]), 422, "location_required")

    assert stored_files(settings) == sorted(photo_files(settings.upload_dir, sha))
    assert rows(session, Photo) == []
    other.release_and_remove()
    assert stored_files(settings) == []


# --- 3: size limits ------------------------------------------------------------------------------


def padded_jpeg(size: int, seed: int = 40) -> bytes:
    """A valid JPEG of exactly `size` bytes (decoders ignore what follows the end marker)."""
    data = jpeg(seed=seed)
    return data + b"\0" * (size - len(data))


def test_photo_size_limit(
    small_client: tuple[TestClient, Settings],
    zone: Zone,
    session: Session,
    subtests: pytest.Subtests,
) -> None:
    client, small = small_client
    with subtests.test(msg="1.5 MB photo"):
        response = post_issue(client, zone, [upload("big.jpg", padded_jpeg(int(1.5 * MB)))])
        body = assert_problem(response, 413, "photo_too_large")
        assert body["max_bytes"] == MB
        assert_nothing_left(client, zone, session, small)
    with subtests.test(msg="a good photo, then one over the limit"):
        uploads = [upload("ok.jpg", jpeg(seed=41)), upload("big.jpg", padded_jpeg(int(1.5 * MB)))]
        assert_problem(post_issue(client, zone, uploads), 413, "photo_too_large")
        assert_nothing_left(client, zone, session, small)
    with subtests.test(msg="exactly 1 MB is accepted"):
        response = post_issue(client, zone, [upload("edge.jpg", padded_jpeg(MB))])
        assert response.status_code == 201, response.text
        assert response.json()["photos"][0]["bytes"] == MB
        assert len(stored_files(small)) == 3


BOUNDARY = "gridproof-test-boundary"


def _multipart_chunks(total: int) -> Iterator[bytes]:
    """A report whose one photo is a JPEG followed by `total` bytes of zeros."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="category"\r\n\r\n'
        f'flyposter\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="photos"; '
        f'filename="huge.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    yield jpeg(seed=42)
    chunk = b"\0" * MB
    for _ in range(total // MB):
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart_headers(zone: Zone) -> dict[str, str]:
    return zone.headers(
        "grid_worker", **{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )


def test_chunked_body_over_the_request_limit_is_cut_off(
    small_client: tuple[TestClient, Settings], zone: Zone, session: Session
) -> None:
    client, small = small_client
    assert small.max_request_bytes == 21 * MB
    response = client.post(
        "/api/v1/issues", content=_multipart_chunks(48 * MB), headers=multipart_headers(zone)
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "photo_too_large")
    assert_nothing_left(client, zone, session, small)


def test_declared_body_over_the_request_limit_is_problem_json(
    small_client: tuple[TestClient, Settings], zone: Zone, session: Session
) -> None:
    # The usual case: phones send Content-Length with a multipart upload.
    client, small = small_client
    body = b"".join(_multipart_chunks(24 * MB))
    response = client.post("/api/v1/issues", content=body, headers=multipart_headers(zone))
    assert int(response.request.headers["content-length"]) > small.max_request_bytes
    assert_problem(response, 413, "photo_too_large")
    assert_nothing_left(client, zone, session, small)


# --- 4: metadata, derivatives, originals


@pytest.fixture(scope="module")
def landscape_reference() -> Image.Image:
    """orient__landscape_1.jpg as it displays, small and grey."""
    return grey_small(Image.open(SAMPLES / "orient__landscape_1.jpg"))


ENDPOINT_SAMPLES = [
    # name, content type, extension of the download, displayed size
    ("orient__landscape_6.jpg", "image/jpeg", "jpg", (1800, 1200)),
    ("other__htc_desire_gps.webp", "image/webp", "webp", (776, 909)),
]


def test_photo_endpoints(
    client: TestClient, zone: Zone, landscape_reference: Image.Image, subtests: pytest.Subtests
) -> None:
    headers = zone.headers("d_super")
    for name, content_type, extension, size in ENDPOINT_SAMPLES:
        with subtests.test(msg=name):
            data = sample(name)
            issue = reported_photo(client, zone, name, lat=LAT, lon=LON)
            photo = issue["photos"][0]

            meta = client.get(f"/api/v1/photos/{photo['id']}", headers=headers)
            assert meta.status_code == 200
            assert meta.json() == photo
            assert (photo["width"], photo["height"]) == size
            assert photo["issue_id"] == issue["id"]

            etags = set()
            for kind, limit in (("thumb", 320), ("large", 1600)):
                response = client.get(photo["urls"][kind], headers=headers)
                assert response.status_code == 200
                assert response.headers["content-type"] == "image/jpeg"
                image = Image.open(io.BytesIO(response.content))
                assert image.format == "JPEG"
                assert max(image.size) == min(limit, max(size))
                assert (image.width > image.height) == (size[0] > size[1])  # upright
                assert len(image.getexif()) == 0
                if name.startswith("orient__"):
                    assert mean_difference(grey_small(image), landscape_reference) < 8
                etags.add(assert_cacheable(client, photo["urls"][kind], response, headers))

            original = client.get(photo["urls"]["original"], headers=headers)
            assert original.status_code == 200
            assert original.content == data
            assert hashlib.sha256(original.content).hexdigest() == photo["sha256"]
            assert original.headers["content-type"] == content_type
            disposition = original.headers["content-disposition"]
            assert disposition.startswith("attachment")
            assert f'filename="{issue["code"]}-{photo["id"]}.{extension}"' in disposition
            etags.add(assert_cacheable(client, photo["urls"]["original"], original, headers))
            assert len(etags) == 3  # each representation has its own validator


def assert_cacheable(client: TestClient, url: str, response: Any, headers: dict[str, str]) -> str:
    etag: str = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["x-content-type-options"] == "nosniff"
    again = client.get(url, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == IMMUTABLE
    stale = client.get(url, headers={**headers, "If-None-Match": '"something-else"'})
    assert stale.status_code == 200
    assert stale.content == response.content
    return etag


def test_if_none_match_lists_and_weak_tags(
    client: TestClient, zone: Zone, subtests: pytest.Subtests
) -> None:
    # RFC 9110 §13.1.2: If-None-Match holds a list of entity tags compared weakly (or "*");
    # caches and proxies send such lists, and weaken tags when they re-encode.
    photo = report(client, zone).json()["photos"][0]
    headers = zone.headers("d_super")
    for kind in ("thumb", "original"):  # derivatives and originals share one code path
        etag = client.get(photo["urls"][kind], headers=headers).headers["etag"]
        for value in (f'"older", {etag}', f"W/{etag}", "*"):
            with subtests.test(msg=f"{kind}: If-None-Match: {value}"):
                again = client.get(photo["urls"][kind], headers={**headers, "If-None-Match": value})
                assert again.status_code == 304


# --- 5: who may read what ------------------------------------------------------------------------


def statuses(client: TestClient, zone: Zone, username: str, photo: dict[str, Any]) -> list[int]:
    headers = zone.headers(username)
    urls = [
        f"/api/v1/photos/{photo['id']}",
        *(photo["urls"][kind] for kind in ("thumb", "large", "original")),
    ]
    return [client.get(url, headers=headers).status_code for url in urls]


ACCESS = {
    # username: statuses of [metadata, thumb, large, original]
    "grid_worker": [200, 200, 200, 200],  # the reporter
    "a_super": [200, 200, 200, 200],
    "d_super": [200, 200, 200, 200],
    "auditor": [200, 200, 200, 200],
    "admin": [200, 200, 200, 200],
    "viewer": [200, 200, 200, 403],
    "a_worker": [200, 200, 200, 403],  # sees the issue, did not report it
    "b_worker": [404, 404, 404, 404],  # office B cannot see an issue of office A's grid
    "b_super": [404, 404, 404, 404],
}


def test_who_may_read_photos(client: TestClient, zone: Zone, subtests: pytest.Subtests) -> None:
    photo = report(client, zone).json()["photos"][0]
    for username, expected in ACCESS.items():
        with subtests.test(msg=username):
            assert statuses(client, zone, username, photo) == expected
    with subtests.test(msg="refusals are problem+json"):
        assert_problem(
            client.get(photo["urls"]["original"], headers=zone.headers("viewer")), 403, "forbidden"
        )
        for url in (
            f"/api/v1/photos/{photo['id']}",
            photo["urls"]["thumb"],
            photo["urls"]["large"],
            photo["urls"]["original"],
        ):
            assert_problem(client.get(url, headers=zone.headers("b_worker")), 404, "not_found")
            assert_problem(client.get(url), 401, "unauthenticated")
    with subtests.test(msg="unknown photo"):
        for url in (
            "/api/v1/photos/999999",
            "/api/v1/photos/999999/thumb",
            "/api/v1/photos/999999/large",
            "/api/v1/photos/999999/original",
        ):
            assert_problem(client.get(url, headers=zone.headers("d_super")), 404, "not_found")
    with subtests.test(msg="a known ETag does not get a viewer past the 403"):
        known = client.get(photo["urls"]["original"], headers=zone.headers("d_super"))
        etag = known.headers["etag"]
        response = client.get(
            photo["urls"]["original"], headers=zone.headers("viewer", **{"If-None-Match": etag})
        )
        assert_problem(response, 403, "forbidden")


def test_reporter_keeps_the_original_after_dispatch_elsewhere(
    client: TestClient, zone: Zone
) -> None:
    issue = dispatched_issue(client, zone, office="B")
    photo = issue["photos"][0]
    assert statuses(client, zone, "grid_worker", photo) == [200, 200, 200, 200]
    # Office B now sees the issue, but its workers did not report it.
    assert statuses(client, zone, "b_worker", photo) == [200, 200, 200, 403]
    assert statuses(client, zone, "b_super", photo) == [200, 200, 200, 200]
    assert statuses(client, zone, "a_worker", photo) == [404, 404, 404, 404]


# --- 6: POST /api/v1/issues/{id}/photos --------------------------------------------------------


def add_photo_events(client: TestClient, zone: Zone, issue_id: int) -> list[dict[str, Any]]:
    return [e for e in events(client, zone, issue_id) if e["action"] == "add_photos"]


def test_after_photos_by_the_responsible_worker(
    client: TestClient, zone: Zone, session: Session
) -> None:
    issue = dispatched_issue(client, zone)
    blobs = (jpeg(seed=81), jpeg(seed=82))
    response = add_photos(client, zone, "a_worker", issue["id"], "after", *blobs, note="已清理")
    assert response.status_code == 201, response.text
    photos = response.json()
    assert [p["kind"] for p in photos] == ["after", "after"]
    assert [p["sha256"] for p in photos] == [hashlib.sha256(b).hexdigest() for b in blobs]
    assert all(p["uploaded_by"] == "a_worker" and p["note"] == "已清理" for p in photos)
    assert all(p["issue_id"] == issue["id"] for p in photos)
    [event] = add_photo_events(client, zone, issue["id"])
    assert event["actor"] == "a_worker"
    assert event["note"] == "已清理"
    assert event["data"]["kind"] == "after"
    assert [p["id"] for p in event["data"]["photos"]] == [p["id"] for p in photos]
    assert [p["sha256"] for p in event["data"]["photos"]] == [p["sha256"] for p in photos]
    reread = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("a_worker")).json()
    assert reread["version"] == issue["version"] + 1
    assert {p["id"] for p in photos} <= {p["id"] for p in reread["photos"]}

    # A photo's own EXIF GPS first, else where the phone says it is.
    response = add_photos(
        client,
        zone,
        "a_worker",
        issue["id"],
        "after",
        jpeg(seed=85, lat=34.76, lon=113.79),
        jpeg(seed=86, lat=None, lon=None),
        lat=LAT,
        lon=LON,
        accuracy_m=8,
    )
    assert response.status_code == 201, response.text
    with_gps, without = response.json()
    assert with_gps["location_source"] == "exif"
    assert (with_gps["lat"], with_gps["lon"]) == pytest.approx((34.76, 113.79), abs=1e-6)
    assert without["location_source"] == "device"
    assert (without["lat"], without["lon"]) == pytest.approx((LAT, LON))

    ten = [jpeg(seed=120 + i, width=64, height=48) for i in range(10)]
    response = add_photos(client, zone, "a_worker", issue["id"], "after", *ten)
    assert response.status_code == 201, response.text
    assert len(response.json()) == 10
    assert len(add_photo_events(client, zone, issue["id"])) == 3
    assert len(rows(session, Photo)) == 1 + 2 + 2 + 10


def test_before_and_verification_photos_add_events(client: TestClient, zone: Zone) -> None:
    issue = report(client, zone).json()
    before = add_photos(client, zone, "grid_worker", issue["id"], "before", jpeg(seed=83))
    assert before.status_code == 201, before.text
    assert before.json()[0]["kind"] == "before"
    current = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("d_super")).json()
    dispatched = act(client, zone, "d_super", current, "dispatch", org_unit="A")
    assert dispatched.status_code == 200, dispatched.text
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    current = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("a_worker")).json()
    assert act(client, zone, "a_worker", current, "submit_rectification").status_code == 200
    check = add_photos(client, zone, "d_super", issue["id"], "verification", jpeg(seed=84))
    assert check.status_code == 201, check.text
    assert check.json()[0]["kind"] == "verification"
    added = add_photo_events(client, zone, issue["id"])
    assert [e["data"]["kind"] for e in added] == ["before", "after", "verification"]
    assert [e["actor"] for e in added] == ["grid_worker", "a_worker", "d_super"]


def test_refused_photo_additions_leave_no_trace(
    client: TestClient,
    zone: Zone,
    session: Session,
    settings: Settings,
    subtests: pytest.Subtests,
) -> None:
    reported = report(client, zone).json()
    dispatched = dispatched_issue(client, zone, office="A")
    # Reported by b_worker, dispatched to office A: b_worker sees it but may not act on it.
    seen = report(client, zone, "b_worker").json()
    seen = act(client, zone, "d_super", seen, "dispatch", org_unit="A").json()
    files_before, photos_before = stored_files(settings), len(rows(session, Photo))

    def post(issue: dict[str, Any], username: str, kind: str, *uploads: tuple[str, Any]) -> Any:
        return client.post(
            f"/api/v1/issues/{issue['id']}/photos",
            data={"kind": kind},
            files=list(uploads),
            headers=zone.headers(username),
        )

    good = upload("good.jpg", jpeg(seed=131), field="files")
    eleven = [
        upload(f"{i}.jpg", jpeg(seed=140 + i, width=64, height=48), field="files")
        for i in range(11)
    ]
    cases = [
        (
            "after on a reported issue",
            409,
            "photo_not_allowed",
            lambda: post(reported, "a_worker", "after", good),
        ),
        (
            "after by an office-B worker who cannot see the issue",
            404,
            "not_found",
            lambda: post(dispatched, "b_worker", "after", good),
        ),
        (
            "after by an office-B worker who sees but does not act on it",
            403,
            "forbidden",
            lambda: post(seen, "b_worker", "after", good),
        ),
        ("before by a viewer", 403, "forbidden", lambda: post(reported, "viewer", "before", good)),
        (
            "verification by a worker",
            403,
            "forbidden",
            lambda: post(dispatched, "a_worker", "verification", good),
        ),
        (
            "eleven files",
            422,
            "too_many_files",
            lambda: post(dispatched, "a_worker", "after", *eleven),
        ),
        (
            "no files",
            422,
            "validation_error",
            lambda: client.post(
                f"/api/v1/issues/{dispatched['id']}/photos",
                data={"kind": "after"},
                headers=zone.headers("a_worker"),
            ),
        ),
        (
            "kind=bogus",
            422,
            "validation_error",
            lambda: post(dispatched, "a_worker", "bogus", good),
        ),
        (
            "a good file and a 200 MP HEIC",
            422,
            "image_too_many_pixels",
            lambda: post(
                dispatched,
                "a_worker",
                "after",
                good,
                upload("hostile__heic_200MP_bomb.heic", field="files"),
            ),
        ),
        (
            "unknown issue",
            404,
            "not_found",
            lambda: post({"id": 999999}, "a_worker", "before", good),
        ),
    ]
    for why, status, code, send in cases:
        with subtests.test(msg=why):
            body = assert_problem(send(), status, code)
            if code == "too_many_files":
                assert body["max_files"] == 10
            if code == "validation_error":
                assert body["errors"]
            assert len(rows(session, Photo)) == photos_before
            assert stored_files(settings) == files_before
            for issue in (reported, dispatched, seen):
                assert add_photo_events(client, zone, issue["id"]) == []
