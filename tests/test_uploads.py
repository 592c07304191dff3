"""Photo uploads stream into storage as they arrive (app/uploads.py).

The behaviour of the two upload routes is tested in tests/routers; here: what streaming adds
(a part goes straight into a storage temp file, refused as soon as it is too large, removed
whatever happens to the request) and the form limits, which this parser applies itself.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.config import MB, Settings
from app.models import Issue, IssueEvent, Photo
from app.services import photos
from tests.factories import Zone, assert_problem, jpeg, report, sample

BOUNDARY = "gridproof-stream-boundary"
PHONE_PHOTO = "gps__samsung_s7edge.jpg"  # 4.2 MB


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_no_rows(session: Session) -> None:
    session.rollback()
    for model in (Issue, Photo, IssueEvent):
        assert list(session.exec(select(model))) == []
    session.rollback()


def multipart_head(filename: str = "photo.jpg") -> bytes:
    """A report's text fields and the start of one photo part."""
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="category"\r\n\r\n'
        f"flyposter\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
        f'name="photos"; filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()


class Upload:
    """POST a body to the ASGI app chunk by chunk, as a server would hand it over."""

    def __init__(self, app: FastAPI, zone: Zone, chunks: list[bytes], disconnect: bool = False):
        self.app = app
        self.chunks = chunks
        self.disconnect = disconnect
        self.received = 0  # chunks the app has asked for
        self.temp_files_seen: list[Path] = []
        self.status = 0
        self.body = b""
        headers = zone.headers(
            "grid_worker", **{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        )
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/issues",
            "raw_path": b"/api/v1/issues",
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }

    def run(self, tmp_dir: Path) -> "Upload":
        async def receive() -> dict[str, Any]:
            self.temp_files_seen += files_under(tmp_dir)
            if self.received == len(self.chunks):
                if self.disconnect:
                    return {"type": "http.disconnect"}
                await anyio.sleep_forever()
            chunk = self.chunks[self.received]
            self.received += 1
            more = self.received < len(self.chunks) or self.disconnect
            return {"type": "http.request", "body": chunk, "more_body": more}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")

        # An event loop of its own, in its own thread (the browser tests keep one running in
        # this thread for the whole session).
        with start_blocking_portal() as portal:
            portal.call(self.app, self.scope, receive, send)
        return self


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_the_pipeline_starts_from_the_streamed_file(
    client: TestClient, zone: Zone, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_second_copy(*_args: Any) -> None:
        raise AssertionError("the upload was copied again")

    monkeypatch.setattr(photos, "spooled_copy", no_second_copy)
    data = sample(PHONE_PHOTO)
    response = report(client, zone, photos=[data], lat="34.75", lon="113.78")
    assert response.status_code == 201, response.text
    assert response.json()["photos"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert response.json()["photos"][0]["bytes"] == len(data)
    assert files_under(settings.upload_dir / "tmp") == []


def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    client: TestClient, zone: Zone, settings: Settings, session: Session
) -> None:
    partial = sample(PHONE_PHOTO)[: 3 * MB]
    upload = Upload(client.app, zone, [multipart_head(), *split(partial, 256 * 1024)], True)
    upload.run(settings.upload_dir / "tmp")
    assert upload.received == len(upload.chunks)
    assert upload.temp_files_seen, "the part was not streamed into storage as it arrived"
    assert files_under(settings.upload_dir) == []
    assert_no_rows(session)


def test_a_body_that_ends_inside_a_photo_leaves_nothing(
    client: TestClient, zone: Zone, settings: Settings, session: Session
) -> None:
    partial = sample(PHONE_PHOTO)[: 3 * MB]  # and no closing boundary
    upload = Upload(client.app, zone, [multipart_head(), *split(partial, 256 * 1024)])
    upload.run(settings.upload_dir / "tmp")
    assert upload.temp_files_seen
    assert upload.status == 422  # the form has no photo
    assert files_under(settings.upload_dir) == []
    assert_no_rows(session)


def test_an_oversized_photo_is_refused_while_it_streams(
    small_client: tuple[TestClient, Settings], zone: Zone, session: Session
) -> None:
    client, small = small_client
    body = sample(PHONE_PHOTO) + b"\0" * (12 * MB)  # the request itself is within its cap
    chunks = [multipart_head(), *split(body, 256 * 1024)]
    upload = Upload(client.app, zone, chunks).run(small.upload_dir / "tmp")
    assert upload.status == 413
    problem = json.loads(upload.body)
    assert (problem["code"], problem["max_bytes"]) == ("photo_too_large", MB)
    # Refused within a write batch (1 MB) of the limit, not after reading the whole body.
    assert upload.received * 256 * 1024 <= 3 * MB, upload.received
    assert files_under(small.upload_dir) == []
    assert_no_rows(session)


def test_a_replayed_upload_leaves_no_temp_file(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    headers = {"Idempotency-Key": "stream-1"}
    photo = jpeg(seed=7)
    first = report(client, zone, photos=[photo], headers=headers)
    again = report(client, zone, photos=[photo], headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert files_under(settings.upload_dir / "tmp") == []


def test_a_refused_photo_leaves_no_temp_file(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    # The second photo is never ingested: the first one's refusal ends the request.
    response = report(client, zone, photos=[b"not an image", jpeg(seed=8)])
    assert_problem(response, 415, "unsupported_media_type")
    assert files_under(settings.upload_dir) == []


def form_post(client: TestClient, zone: Zone, data: Any, files: Any) -> Any:
    return client.post("/api/v1/issues", data=data, files=files, headers=zone.headers("a_worker"))


def test_form_limits(
    client: TestClient, zone: Zone, settings: Settings, subtests: pytest.Subtests
) -> None:
    tiny = jpeg(seed=9, width=32, height=24)
    photo = [("photos", ("p.jpg", tiny, "image/jpeg"))]
    cases = [
        ("41 files", {"category": "flyposter"}, [("photos", ("p.jpg", tiny, "image/jpeg"))] * 41),
        ("101 fields", {f"f{i}": "x" for i in range(101)}, photo),
        ("a text field over 1 MB", {"description": "x" * (MB + 1)}, photo),
    ]
    for why, data, files in cases:
        with subtests.test(msg=why):
            assert_problem(form_post(client, zone, data, files), 400, "bad_request")
            assert files_under(settings.upload_dir / "tmp") == []
    with subtests.test(msg="no boundary"):
        response = client.post(
            "/api/v1/issues",
            content=b"--x\r\n",
            headers=zone.headers("a_worker", **{"Content-Type": "multipart/form-data"}),
        )
        assert_problem(response, 400, "bad_request")
    with subtests.test(msg="40 files pass the form limits (and meet the per-field count)"):
        many = [("photos", ("p.jpg", tiny, "image/jpeg"))] * 40
        response = form_post(client, zone, {"category": "flyposter"}, many)
        assert_problem(response, 422, "too_many_files")
        assert files_under(settings.upload_dir / "tmp") == []


def test_the_openapi_description_of_the_upload_forms(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    for path, model, files in (
        ("/api/v1/issues", "IssueReport", {"photos": "1–10 before-photos"}),
        ("/api/v1/issues/{issue_id}/photos", "PhotoForm", {"files": "1–10 photos"}),
    ):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        body = content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
        form = schema["components"]["schemas"][body]
        assert form["allOf"] == [{"$ref": f"#/components/schemas/{model}"}]
        for name, description in files.items():
            assert form["properties"][name]["items"] == binary
            assert form["properties"][name]["description"] == description
            assert name in form["required"]
    after = schema["components"]["schemas"]["Body_report_issue_api_v1_issues_post"]
    assert after["properties"]["after_photos"]["description"] == "0–10 after-photos"
