"""Gridproof with storage=s3 against a real S3-protocol server (moto_server over HTTP), on
SQLite and PostgreSQL: the pipeline end to end, the store going away mid-request, what the
sweep then cleans, and a bucket that does not exist at startup."""

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import insert
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import get_engine
from app.main import create_app
from app.models import Issue, Photo, StorageClaim
from app.models.base import utcnow
from app.services import sweep, verification
from app.services.objects import StoreNotUsable, derivative_key, open_store, original_key
from tests.factories import Zone, jpeg, make_zone, report
from tests.s3_server import CREDENTIALS, MotoServer, s3_settings
from tests.servers import TrickledReport, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]


# Photos under a prefix (a bucket may be shared); no sweep thread (the tests sweep by hand).
OPTIONS: dict[str, Any] = {"s3_prefix": "city/", "sweep_interval_s": 0}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, s3_bucket: tuple[str, str]) -> Settings:
    """This module's settings: storage=s3 on a fresh bucket (overrides conftest's)."""
    return s3_settings(database_url, tmp_path, *s3_bucket, **OPTIONS)


def local_objects(settings: Settings) -> list[Path]:
    """Photo files in the local folder (with storage=s3 there must be none)."""
    root = settings.upload_dir
    return [p for top in ("originals", "derived") for p in (root / top).rglob("*") if p.is_file()]


def bucket_keys(settings: Settings) -> list[str]:
    return sorted(open_store(settings).keys(""))


def test_a_report_is_stored_served_zipped_exported_and_verified_from_s3(
    client: TestClient, zone: Zone, session: Session, settings: Settings
) -> None:
    data, after = jpeg(seed=81), jpeg(seed=82)
    created = report(client, zone, photos=[data], after=[after])
    assert created.status_code == 201, created.text
    photo = created.json()["photos"][0]
    sha = photo["sha256"]
    assert sha == hashlib.sha256(data).hexdigest()
    assert local_objects(settings) == []
    assert original_key(sha) in bucket_keys(settings)
    assert derivative_key(sha, "thumb") in bucket_keys(settings)

    headers = zone.headers("d_super")
    original = client.get(f"/api/v1/photos/{photo['id']}/original", headers=headers)
    assert original.status_code == 200 and original.content == data
    assert original.headers["etag"] == f'"{sha}"'
    thumb = client.get(f"/api/v1/photos/{photo['id']}/thumb", headers=headers)
    assert thumb.status_code == 200 and thumb.content.startswith(b"\xff\xd8")
    assert thumb.content == open_store(settings).open(derivative_key(sha, "thumb")).read()
    cached = client.get(
        f"/api/v1/photos/{photo['id']}/large",
        headers={**headers, "If-None-Match": f'"{sha}-large"'},
    )
    assert cached.status_code == 304

    issue_id = created.json()["id"]
    comparison = client.get(f"/api/v1/issues/{issue_id}/comparison.jpg", headers=headers)
    assert comparison.status_code == 200 and comparison.content.startswith(b"\xff\xd8")
    assert any(key.startswith("derived/comparisons/") for key in bucket_keys(settings))
    bundle = client.get(f"/api/v1/issues/{issue_id}/evidence.zip", headers=headers)
    assert bundle.status_code == 200
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        assert archive.read(f"originals/{sha}.jpg") == data
        assert archive.read("comparison.jpg") == comparison.content
    ledger = client.get("/api/v1/exports/ledger.xlsx", headers=headers)
    assert ledger.status_code == 200
    assert len(load_workbook(io.BytesIO(ledger.content)).active._images) == 2

    problems, checked = verification.verify(session, settings)
    assert problems == [] and checked.photos == 2


def test_verify_rehashes_the_originals_in_the_bucket(
    client: TestClient, zone: Zone, session: Session, settings: Settings, s3_server: MotoServer
) -> None:
    created = report(client, zone, photos=[jpeg(seed=83)])
    sha = created.json()["photos"][0]["sha256"]
    raw = s3_server.client()
    raw.put_object(Bucket=settings.s3_bucket, Key=f"city/{original_key(sha)}", Body=b"changed")

    problems, _checked = verification.verify(session, settings)

    assert problems == [
        f"photo {created.json()['photos'][0]['id']} (issue {created.json()['id']}): original "
        f"bytes hash to {hashlib.sha256(b'changed').hexdigest()}, recorded {sha}"
    ]
    photo_id = created.json()["photos"][0]["id"]
    refused = client.get(f"/api/v1/photos/{photo_id}/original", headers=zone.headers("d_super"))
    assert refused.status_code == 500
    assert refused.json()["code"] == "original_corrupted"


def test_the_sweep_removes_expired_claims_and_unused_objects_from_the_bucket(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    """What a replica killed between putting objects and committing left: objects in the
    bucket and an expired claim. The sweep removes them; committed photos' objects stay."""
    kept = report(client, zone, photos=[jpeg(seed=84)]).json()["photos"][0]["sha256"]
    store = open_store(settings)
    orphan = hashlib.sha256(b"killed mid-request").hexdigest()
    temp = settings.upload_dir / "tmp" / "up-orphan"
    temp.write_bytes(b"killed mid-request")
    store.put_files([(temp, original_key(orphan))], [])
    with get_engine(settings.database_url).begin() as connection:
        past = utcnow() - timedelta(seconds=1)
        connection.execute(
            insert(StorageClaim).values(sha256=orphan, token="dead", expires_at=past)
        )

    startup = sweep.sweep(settings, stored=False)  # what the startup's sweep does

    assert startup.claims == [f"claim {orphan} dead"]
    assert startup.stored == [original_key(orphan)]
    assert original_key(orphan) not in bucket_keys(settings)
    assert original_key(kept) in bucket_keys(settings)
    assert sweep.sweep(settings).paths == []


# --- The store going away -----------------------------------------------------------------


@pytest.fixture
def doomed(s3_credentials: None) -> Iterator[MotoServer]:
    """A moto server of this test's own, to be killed."""
    server = MotoServer().start()
    yield server
    server.stop()


def test_a_store_killed_mid_request_gives_503_and_no_row(
    database_url: str, tmp_path: Path, doomed: MotoServer
) -> None:
    settings = s3_settings(database_url, tmp_path, doomed.endpoint, doomed.new_bucket(), **OPTIONS)
    settings = settings.model_copy(update={"claim_ttl_s": 1})
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        zone = make_zone(session)
    server, thread, port = serve_in_thread(settings)
    try:
        upload = TrickledReport(port, zone.tokens["grid_worker"], [jpeg(seed=85)])
        upload.send(len(upload.body) // 2)  # the body half in: then the store goes
        doomed.kill()
        status, headers, body = upload.finish()
    finally:
        server.should_exit = True
        thread.join(timeout=30)

    assert status == 503, body
    assert headers["content-type"] == "application/problem+json"
    assert b'"code":"storage_unavailable"' in body.replace(b" ", b"")
    assert int(headers["retry-after"]) > 0
    with Session(get_engine(database_url)) as session:
        assert session.exec(select(Issue)).all() == []
        assert session.exec(select(Photo)).all() == []
        # The store refused the clean-up too: the claim stays for the sweep, and expires.
        claims = session.exec(select(StorageClaim)).all()
        assert len(claims) == 1 and claims[0].expires_at <= utcnow() + timedelta(seconds=1)
    assert list((settings.upload_dir / "tmp").iterdir()) == []  # no temp file left either


def test_a_store_gone_answers_503_to_reads_and_writes_and_is_not_ready(
    database_url: str, tmp_path: Path, doomed: MotoServer
) -> None:
    settings = s3_settings(database_url, tmp_path, doomed.endpoint, doomed.new_bucket(), **OPTIONS)
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        zone = make_zone(session)
    with TestClient(create_app(settings)) as client:
        created = report(client, zone, photos=[jpeg(seed=86)])
        assert created.status_code == 201
        photo_id = created.json()["photos"][0]["id"]
        doomed.kill()
        thumb = client.get(f"/api/v1/photos/{photo_id}/thumb", headers=zone.headers("d_super"))
        ready = client.get("/readyz")
        again = report(client, zone, photos=[jpeg(seed=87)])
    assert thumb.status_code == 503 and thumb.json()["code"] == "storage_unavailable"
    assert "retry-after" in thumb.headers
    assert ready.status_code == 503 and ready.json()["storage"] is False
    assert again.status_code == 503 and again.json()["code"] == "storage_unavailable"
    assert "retry-after" in again.headers
    with Session(get_engine(database_url)) as session:
        assert len(session.exec(select(col(Issue.id))).all()) == 1
        assert len(session.exec(select(col(Photo.id))).all()) == 1


# --- A bucket that is not there -----------------------------------------------------------


def test_an_app_on_a_missing_bucket_does_not_start(
    database_url: str, tmp_path: Path, s3_server: MotoServer, s3_credentials: None
) -> None:
    settings = s3_settings(database_url, tmp_path, s3_server.endpoint, "no-such-bucket", **OPTIONS)
    with (
        pytest.raises(StoreNotUsable, match="GRIDPROOF_S3_BUCKET"),
        TestClient(create_app(settings)),
    ):
        pass


def test_gridproof_serve_on_a_missing_bucket_exits_naming_the_setting(
    tmp_path: Path, s3_server: MotoServer
) -> None:
    env = {
        **os.environ,
        **CREDENTIALS,
        "GRIDPROOF_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "GRIDPROOF_UPLOAD_DIR": str(tmp_path / "uploads"),
        "GRIDPROOF_STORAGE": "s3",
        "GRIDPROOF_S3_ENDPOINT": s3_server.endpoint,
        "GRIDPROOF_S3_BUCKET": "no-such-bucket",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "GRIDPROOF_S3_BUCKET" in done.stderr and "no-such-bucket" in done.stderr
    assert "does not exist" in done.stderr
