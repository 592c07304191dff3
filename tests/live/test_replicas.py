"""Two replicas tested as replicas: two `gridproof serve --no-migrate` processes (real uvicorn)
with DIFFERENT local folders, one PostgreSQL database (migrated once by `gridproof migrate`),
one S3-protocol server (moto, started by the tests), GRIDPROOF_STORAGE=s3.

- a report uploaded through A is served (photo bytes), evidence-zipped and verified through B;
- identical photos raced through A and B at once are stored as one object, written once;
- `kill -9` of A in the middle of an upload leaves no orphan object after B's `gridproof sweep`;
- `gridproof verify` re-hashes the originals from the store (and names a tampered one).

PostgreSQL is required as everywhere (skipped without it unless GRIDPROOF_REQUIRE_POSTGRES=1).
"""

import hashlib
import io
import subprocess
import threading
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from PIL import Image
from sqlalchemy import text
from sqlmodel import Session

from app.db import get_engine
from app.services import auth
from app.services.objects import original_key, photo_keys
from tests import factories
from tests.conftest import RUN_ID, _pg_exec, _pg_url, _require_pg
from tests.live.conftest import wait_for
from tests.replicas import Cluster, Replica, replicas
from tests.s3_server import MotoServer
from tests.servers import TrickledReport
from tests.services.test_checkpoints import SYSTEM_PYTHON  # the auditor's interpreter

CLAIM_TTL_S = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: MotoServer) -> Iterator[Cluster]:
    """A PostgreSQL database migrated by the one-shot `gridproof migrate`, a versioned bucket
    (so that any second write of a key would show as a second version), the shared audit key."""
    _require_pg()
    name = f"gp_{RUN_ID}_replicas"
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _pg_exec(f"CREATE DATABASE {name}")
    bucket = s3_server.new_bucket()
    s3_server.client().put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    root = tmp_path_factory.mktemp("cluster")
    # Claims of requests in flight expire after CLAIM_TTL_S (600 s by default): then the sweep
    # takes them for a dead request's.
    ttl = {"GRIDPROOF_CLAIM_TTL_S": str(CLAIM_TTL_S)}
    cluster = Cluster(_pg_url(name), s3_server.endpoint, bucket, root, extra=ttl)
    assert "migrations applied" in cluster.command("migrate").stdout
    cluster.make_audit_key()
    yield cluster
    get_engine(cluster.database_url).dispose()
    _pg_exec(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def zone(cluster: Cluster) -> factories.Zone:
    with pytest.MonkeyPatch.context() as patch:  # the cheap hashing of tests/conftest.py
        patch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))
        with Session(get_engine(cluster.database_url), expire_on_commit=False) as session:
            return factories.make_zone(session)


@pytest.fixture(scope="module")
def pair(cluster: Cluster, zone: factories.Zone) -> Iterator[list[Replica]]:
    """Replicas A and B, each in its own folder."""
    with replicas(cluster, "a", "b") as started:
        yield started


def api(replica: Replica, zone: factories.Zone, username: str) -> httpx.Client:
    return httpx.Client(base_url=replica.url, headers=zone.headers(username), timeout=60)


def objects(cluster: Cluster, s3: MotoServer, sha256: str) -> set[str]:
    """The keys (under the prefix) of these bytes' objects in the bucket now."""
    present = set()
    for key in photo_keys(sha256):
        listed = s3.client().list_objects_v2(Bucket=cluster.bucket, Prefix=cluster.prefix + key)
        if any(item["Key"] == cluster.prefix + key for item in listed.get("Contents", [])):
            present.add(key)
    return present


def versions(cluster: Cluster, s3: MotoServer, sha256: str) -> dict[str, int]:
    """How many times each of these bytes' objects was written (the bucket keeps versions)."""
    written: dict[str, int] = {}
    for key in photo_keys(sha256):
        name = cluster.prefix + key
        listed = s3.client().list_object_versions(Bucket=cluster.bucket, Prefix=name)
        for version in listed.get("Versions", []):
            if version["Key"] == name:
                written[key] = written.get(key, 0) + 1
    return written


def fresh_photo(width: int = 640, height: int = 480) -> bytes:
    return factories.jpeg(seed=uuid.uuid4().int % 100_000, width=width, height=height)


def report_through(replica: Replica, zone: factories.Zone, photos: list[bytes], **form: Any) -> Any:
    with api(replica, zone, "grid_worker") as client:
        response = client.post(
            "/api/v1/issues",
            data={"category": "flyposter", "description": "小广告", **form},
            files=factories.files("photos", *photos),
        )
    assert response.status_code == 201, response.text
    return response.json()


def rows(cluster: Cluster, sql: str, **params: Any) -> list[Any]:
    with get_engine(cluster.database_url).connect() as connection:
        return list(connection.execute(text(sql), params))


def test_a_report_through_a_is_served_zipped_and_verified_through_b(
    pair: list[Replica],
    zone: factories.Zone,
    cluster: Cluster,
    s3_server: MotoServer,
    tmp_path: Path,
) -> None:
    a, b = pair
    photos = [fresh_photo(), fresh_photo()]
    issue = report_through(a, zone, photos)
    shas = [hashlib.sha256(photo).hexdigest() for photo in photos]
    assert [p["sha256"] for p in issue["photos"]] == shas

    with api(b, zone, "auditor") as client:
        assert client.get(f"/api/v1/issues/{issue['id']}").json()["code"] == issue["code"]
        for photo, summary in zip(photos, issue["photos"], strict=True):
            original = client.get(f"/api/v1/photos/{summary['id']}/original")
            assert original.status_code == 200
            assert original.content == photo
            thumb = client.get(f"/api/v1/photos/{summary['id']}/thumb")
            with Image.open(io.BytesIO(thumb.content)) as img:
                assert img.format == "JPEG" and max(img.size) <= 320
        bundle = client.get(f"/api/v1/issues/{issue['id']}/evidence.zip")
        assert bundle.status_code == 200, bundle.text
    with api(a, zone, "auditor") as client:  # the key as published by the other replica
        (tmp_path / "published.pem").write_text(client.get("/api/v1/audit/public-key").text)

    with zipfile.ZipFile(io.BytesIO(bundle.content)) as unzipped:
        names = set(unzipped.namelist())
        assert {f"originals/{sha}.jpg" for sha in shas} <= names
        for photo, sha in zip(photos, shas, strict=True):
            assert unzipped.read(f"originals/{sha}.jpg") == photo
        unzipped.extractall(tmp_path / "bundle")
    checked = subprocess.run(
        [SYSTEM_PYTHON, "-I", "verify_bundle.py", "--public-key", str(tmp_path / "published.pem")],
        cwd=tmp_path / "bundle",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The photos are in the bucket, and in neither replica's folder.
    for sha in shas:
        assert versions(cluster, s3_server, sha) == dict.fromkeys(photo_keys(sha), 1)
    for replica in pair:
        assert not list(replica.upload_dir.glob("originals/**/*"))
        assert not list(replica.upload_dir.glob("derived/**/*.jpg"))


def race(pair: list[Replica], zone: factories.Zone, photo: bytes) -> dict[str, Any]:
    """The same photo reported through every replica at the same moment: name → issue."""
    start = threading.Barrier(len(pair))

    def upload(replica: Replica) -> Any:
        start.wait()
        return report_through(replica, zone, [photo])

    with ThreadPoolExecutor(len(pair)) as pool:
        futures = {replica.name: pool.submit(upload, replica) for replica in pair}
    return {name: future.result() for name, future in futures.items()}


def test_identical_uploads_raced_through_both_replicas_store_one_object(
    pair: list[Replica], zone: factories.Zone, cluster: Cluster, s3_server: MotoServer
) -> None:
    for _round in range(3):
        photo = fresh_photo(1600, 1200)  # a larger one: a wider window for the race
        sha = hashlib.sha256(photo).hexdigest()
        answers = race(pair, zone, photo)

        assert sorted(answers) == ["a", "b"]  # both reports were made, each with the photo
        assert {answer["photos"][0]["sha256"] for answer in answers.values()} == {sha}
        assert answers["a"]["id"] != answers["b"]["id"]
        # One object per key, written once (a second PUT would be a second version).
        assert versions(cluster, s3_server, sha) == dict.fromkeys(photo_keys(sha), 1)
        for replica in pair:
            with api(replica, zone, "auditor") as client:
                for answer in answers.values():
                    got = client.get(f"/api/v1/photos/{answer['photos'][0]['id']}/original")
                    assert got.content == photo


@contextmanager
def writes_held(cluster: Cluster) -> Iterator[None]:
    """The change counter's row locked: a request that has put its objects waits there, at the
    first write of its transaction, until this ends."""
    with get_engine(cluster.database_url).connect() as connection:
        connection.execute(text("SELECT value FROM change_counter FOR UPDATE"))
        try:
            yield
        finally:
            connection.rollback()


def waiting_on_a_lock(cluster: Cluster) -> bool:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(rows(cluster, query)[0][0])


def test_kill_9_after_the_objects_are_put_leaves_no_orphan_after_the_other_replicas_sweep(
    pair: list[Replica], zone: factories.Zone, cluster: Cluster, s3_server: MotoServer
) -> None:
    a, b = pair
    description = f"killed-{uuid.uuid4().hex[:8]}"
    photos = [fresh_photo(), fresh_photo()]
    shas = [hashlib.sha256(photo).hexdigest() for photo in photos]
    with writes_held(cluster):
        upload = TrickledReport(a.port, zone.tokens["grid_worker"], photos, _fields(description))
        upload.send(len(upload.body))
        # A has put every object and waits in its write transaction, before the commit.
        wait_for(lambda: all(objects(cluster, s3_server, sha) for sha in shas), seconds=30)
        wait_for(lambda: waiting_on_a_lock(cluster), seconds=30)
        a.kill()
    upload.sock.close()
    for sha in shas:  # the killed request's objects, left behind
        assert objects(cluster, s3_server, sha) == set(photo_keys(sha))
    wait_for(lambda: not waiting_on_a_lock(cluster))  # its transaction rolled back
    assert not rows(cluster, "SELECT id FROM issues WHERE description = :d", d=description)
    (expires_at,) = rows(cluster, "SELECT max(expires_at) FROM storage_claims")[0]

    # Until the claims expire, B cannot tell a dead request from a slow one: kept. (On a busy
    # machine this sweep may start after they expired: then it is the one that removes them.)
    early = cluster.command("sweep", folder=b.name)
    if rows(cluster, "SELECT 1 FROM storage_claims WHERE expires_at > now()"):
        assert all(objects(cluster, s3_server, sha) for sha in shas), early.stdout
    wait_for(lambda: rows(cluster, "SELECT now() > :at", at=expires_at)[0][0], seconds=30)

    swept = cluster.command("sweep", folder=b.name)
    removed = early.stdout + swept.stdout
    assert "2 dead claim(s), 6 unreferenced" in removed, removed
    for sha in shas:
        assert objects(cluster, s3_server, sha) == set(), swept.stdout
    assert not rows(cluster, "SELECT * FROM storage_claims")

    a.start()  # A again, on a fresh port: the other tests go on with it
    issue = report_through(a, zone, [photos[0]])  # the same bytes: stored again, and served
    with api(b, zone, "auditor") as client:
        served = client.get(f"/api/v1/photos/{issue['photos'][0]['id']}/original")
        assert served.content == photos[0]


def test_kill_9_in_the_middle_of_the_body_leaves_nothing_anywhere(
    pair: list[Replica], zone: factories.Zone, cluster: Cluster, s3_server: MotoServer
) -> None:
    a, b = pair
    first, second = fresh_photo(1600, 1200), fresh_photo(1600, 1200)
    shas = [hashlib.sha256(photo).hexdigest() for photo in (first, second)]
    upload = TrickledReport(a.port, zone.tokens["grid_worker"], [first, second], _fields("half"))
    upload.send(upload.photo_ends[0] + len(second) // 2)
    # A is receiving the body: the second photo is streaming into its temp file.
    wait_for(lambda: [p for p in (a.upload_dir / "tmp").glob("up-*") if p.stat().st_size], 30)
    a.kill()
    upload.sock.close()
    assert list((a.upload_dir / "tmp").glob("up-*"))  # A's temp files, in A's folder only

    swept = cluster.command("sweep", folder=b.name)
    assert "0 dead claim(s)" in swept.stdout, swept.stdout
    for sha in shas:
        assert objects(cluster, s3_server, sha) == set()
    assert not rows(cluster, "SELECT * FROM storage_claims")

    a.start()  # its own startup sweep removes what the killed request left in its folder
    assert not list((a.upload_dir / "tmp").glob("up-*"))


def test_gridproof_verify_rehashes_the_originals_from_the_store(
    pair: list[Replica], zone: factories.Zone, cluster: Cluster, s3_server: MotoServer
) -> None:
    photo = fresh_photo()
    issue = report_through(pair[0], zone, [photo])
    verified = cluster.command("verify", "--issue", str(issue["id"]), folder="verify")
    assert verified.stdout.splitlines()[-1].startswith("checked 1 photo(s)")
    assert verified.stdout.splitlines()[-1].endswith("OK")

    sha = issue["photos"][0]["sha256"]
    key = cluster.prefix + original_key(sha)
    s3 = s3_server.client()
    s3.put_object(Bucket=cluster.bucket, Key=key, Body=photo[:-10] + b"tampered!!")
    try:
        tampered = cluster.command("verify", "--issue", str(issue["id"]), check=False)
        assert tampered.returncode == 1
        assert any(sha in line for line in tampered.stdout.splitlines()), tampered.stdout
    finally:
        s3.put_object(Bucket=cluster.bucket, Key=key, Body=photo)
    assert cluster.command("verify", "--issue", str(issue["id"])).returncode == 0


def _fields(description: str) -> dict[str, str]:
    """A report located by its photos' EXIF (no lat/lon fields)."""
    return {"category": "flyposter", "description": description}
