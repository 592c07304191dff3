"""Claims in the database (app/services/claims.py): the objects of bytes shared by requests in
progress stay while any of them lives or a committed row uses them; each database, each store
backend (local folder, S3 on a moto server)."""

import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, update
from sqlmodel import Session, select

from app.config import Settings
from app.db import get_engine
from app.demo.photos import make_jpeg
from app.main import create_app
from app.models import Photo, StorageClaim
from app.models.base import utcnow
from app.services.claims import Claim
from app.services.objects import ObjectStore, open_store, photo_keys
from app.services.photos import IngestedPhoto, ingest_photo
from app.services.storage import Storage
from tests.factories import jpeg, make_zone, report
from tests.s3_server import s3_settings


@pytest.fixture(params=["local", "s3"])
def store_settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Settings:
    """Settings on this test's database, with the local folder or a fresh S3 bucket."""
    if request.param == "local":
        return Settings(database_url=database_url, upload_dir=tmp_path / "uploads")
    return s3_settings(database_url, tmp_path, *request.getfixturevalue("s3_bucket"))


def new_claim(settings: Settings) -> Claim:
    return Claim(settings, open_store(settings))


def ingest_for(claim: Claim, data: bytes) -> IngestedPhoto:
    """What a request that goes on to write rows does: ingest under its claim."""
    settings = claim.settings
    return ingest_photo(io.BytesIO(data), settings, Storage(settings.upload_dir), claim)


def stored(store: ObjectStore) -> list[str]:
    return sorted(store.keys(""))


def claims_left(settings: Settings) -> list[tuple[str, str]]:
    with Session(get_engine(settings.database_url)) as session:
        rows = session.exec(select(StorageClaim.sha256, StorageClaim.token))
        return sorted((sha, token) for sha, token in rows)


def claimed_photo(settings: Settings, seed: int) -> tuple[bytes, Claim, IngestedPhoto]:
    """A photo stored by a request in progress: its bytes, the request's claim, the photo."""
    data = make_jpeg(640, 480, seed=seed)
    claim = new_claim(settings)
    return data, claim, ingest_for(claim, data)


def test_a_claim_is_a_row_until_released(store_settings: Settings) -> None:
    _data, claim, photo = claimed_photo(store_settings, seed=10)
    assert claims_left(store_settings) == [(photo.sha256, claim.token)]
    claim.release()
    assert claims_left(store_settings) == []
    assert stored(claim.store) == sorted(photo_keys(photo.sha256))


def test_a_failing_request_keeps_the_objects_a_request_in_progress_reuses(
    store_settings: Settings,
) -> None:
    """The same bytes in two requests: the first stores them, the second finds them stored.
    The first then fails: the objects stay, for the second, which will reference them."""
    data, first, photo = claimed_photo(store_settings, seed=11)
    second = new_claim(store_settings)
    ingest_for(second, data)

    first.release_and_remove()  # no committed row uses them
    assert stored(first.store) == sorted(photo_keys(photo.sha256))
    second.release()  # committed

    assert stored(first.store) == sorted(photo_keys(photo.sha256))
    assert claims_left(store_settings) == []


def test_the_last_of_two_failing_requests_removes_the_objects(store_settings: Settings) -> None:
    data, first, _photo = claimed_photo(store_settings, seed=14)
    second = new_claim(store_settings)
    ingest_for(second, data)
    ingest_for(second, data)  # the same bytes twice in one request: one claim
    first.release_and_remove()
    assert len(stored(first.store)) == 3 and len(claims_left(store_settings)) == 1

    second.release_and_remove()  # it created none of them: still removes

    assert stored(first.store) == []
    assert claims_left(store_settings) == []


def test_a_request_after_a_failed_one_stores_the_bytes_again(store_settings: Settings) -> None:
    data, first, _photo = claimed_photo(store_settings, seed=12)
    first.release_and_remove()
    assert stored(first.store) == []

    second = new_claim(store_settings)
    photo = ingest_for(second, data)
    second.release()

    assert stored(second.store) == sorted(photo_keys(photo.sha256))
    assert claims_left(store_settings) == []


def test_a_failing_request_keeps_the_objects_committed_rows_use(store_settings: Settings) -> None:
    with Session(get_engine(store_settings.database_url), expire_on_commit=False) as session:
        zone = make_zone(session)
    data = jpeg(seed=13)
    with TestClient(create_app(store_settings)) as client:
        assert report(client, zone, photos=[data]).status_code == 201
    claim = new_claim(store_settings)
    photo = ingest_for(claim, data)

    claim.release_and_remove()

    assert stored(claim.store) == sorted(photo_keys(photo.sha256))
    assert claims_left(store_settings) == []


def test_a_claim_of_another_process_holds_until_it_expires(store_settings: Settings) -> None:
    """A claim taken by another process (a replica) keeps the objects, even after that
    process died without releasing it, until its time is up: then it counts for nothing."""
    data, claim, photo = claimed_photo(store_settings, seed=15)
    script = (
        "import sys; from app.config import Settings; from app.services.claims import Claim; "
        "from app.services.objects import open_store; "
        "s = Settings.model_validate_json(sys.argv[1]); "
        "Claim(s, open_store(s)).add(sys.argv[2])"  # and exits still claiming
    )
    subprocess.run(
        [sys.executable, "-c", script, store_settings.model_dump_json(), photo.sha256],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    claim.release_and_remove()
    (other,) = claims_left(store_settings)
    assert other[0] == photo.sha256 and other[1] != claim.token
    assert stored(claim.store) == sorted(photo_keys(photo.sha256))

    expire_claims(store_settings)
    again = new_claim(store_settings)
    again.add(photo.sha256)
    again.release_and_remove()  # the dead process's claim keeps nothing

    assert stored(claim.store) == []
    assert data  # the bytes were the photo's


def expire_claims(settings: Settings) -> None:
    """Every claim's time is up (as if claim_ttl_s had passed)."""
    with get_engine(settings.database_url).begin() as connection:
        past = utcnow() - timedelta(seconds=1)
        connection.execute(update(StorageClaim).values(expires_at=past))


def test_a_claim_ended_in_a_transaction_that_rolls_back_still_holds(
    store_settings: Settings,
) -> None:
    """`release_in` rides in the request's write transaction: should that roll back, the claim
    is still there, and giving up removes the objects."""
    _data, claim, photo = claimed_photo(store_settings, seed=16)
    engine = get_engine(store_settings.database_url)
    with engine.connect() as connection, connection.begin() as transaction:
        claim.release_in(connection)
        transaction.rollback()
    assert claims_left(store_settings) == [(photo.sha256, claim.token)]

    claim.release_and_remove()

    assert claims_left(store_settings) == []
    assert stored(claim.store) == []


def test_a_report_ends_its_claim_in_its_own_write_transaction(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transaction of its own after the report's: the claim's rows go with its commit."""
    with Session(get_engine(store_settings.database_url), expire_on_commit=False) as session:
        zone = make_zone(session)

    def separately(_claim: Claim) -> None:
        raise AssertionError("the claim was released in a transaction of its own")

    monkeypatch.setattr(Claim, "release", separately)
    data = jpeg(seed=17)
    with TestClient(create_app(store_settings)) as client:
        response = report(client, zone, photos=[data])
    assert response.status_code == 201, response.text
    sha256 = response.json()["photos"][0]["sha256"]
    assert claims_left(store_settings) == []
    assert stored(open_store(store_settings)) == sorted(photo_keys(sha256))


def test_a_report_that_fails_after_ending_its_claim_removes_what_it_stored(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write transaction that ends the claim fails before it commits: it rolls back, the
    claim with it, so the request gives up as any failing one does and removes its objects."""
    with Session(get_engine(store_settings.database_url), expire_on_commit=False) as session:
        zone = make_zone(session)
    release_in = Claim.release_in

    def then_fail(claim: Claim, connection: Connection) -> None:
        release_in(claim, connection)
        raise RuntimeError("the write transaction failed")

    monkeypatch.setattr(Claim, "release_in", then_fail)
    with TestClient(create_app(store_settings), raise_server_exceptions=False) as client:
        response = report(client, zone, photos=[jpeg(seed=18)])
    assert response.status_code == 500
    assert claims_left(store_settings) == []
    assert stored(open_store(store_settings)) == []
    with Session(get_engine(store_settings.database_url)) as session:
        assert session.exec(select(Photo)).first() is None
