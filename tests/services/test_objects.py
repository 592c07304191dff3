"""The object store's contract (app/services/objects.py), held by both backends: the local
folder and S3 (a real moto server over HTTP)."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import StorageUnavailable
from app.services import objects
from app.services.objects import ObjectMissing, ObjectStore, StoreNotUsable
from app.services.storage_s3 import S3Store
from tests.s3_server import MotoServer

SHA = hashlib.sha256(b"photo").hexdigest()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        settings = Settings(upload_dir=tmp_path / "uploads")
    else:
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        settings = Settings(
            upload_dir=tmp_path / "uploads",
            storage="s3",
            s3_endpoint=endpoint,
            s3_bucket=bucket,
            s3_prefix="gp",
        )
    store = objects.open_store(settings)
    store.check()
    return store


def _temp(tmp_path: Path, data: bytes, name: str = "up") -> Path:
    path = tmp_path / f"{name}-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return path


def test_keys_are_the_local_folders_paths() -> None:
    assert objects.original_key(SHA) == f"originals/{SHA[:2]}/{SHA}"
    assert objects.derivative_key(SHA, "thumb") == f"derived/{SHA[:2]}/{SHA}.thumb.jpg"
    assert objects.comparison_key("1-2-3") == "derived/comparisons/1-2-3.jpg"
    assert objects.photo_keys(SHA)[0] == objects.original_key(SHA)


def test_put_then_read_back(store: ObjectStore, tmp_path: Path) -> None:
    temp = _temp(tmp_path, b"the original bytes")
    created: list[str] = []
    store.put_files([(temp, objects.original_key(SHA))], created)
    assert created == [objects.original_key(SHA)]
    assert not temp.exists()  # consumed
    assert objects.read_bytes(store, objects.original_key(SHA)) == b"the original bytes"
    assert store.size(objects.original_key(SHA)) == len(b"the original bytes")
    assert store.exists(objects.original_key(SHA))


def test_write_once_never_overwrites(store: ObjectStore, tmp_path: Path) -> None:
    key = objects.derivative_key(SHA, "large")
    assert objects.put_file(store, _temp(tmp_path, b"first"), key)
    second = _temp(tmp_path, b"second")
    assert not objects.put_file(store, second, key)
    assert not second.exists()
    assert objects.read_bytes(store, key) == b"first"


def test_put_files_reports_each_key_created_before_a_failure(
    store: ObjectStore, tmp_path: Path
) -> None:
    good = _temp(tmp_path, b"good")
    gone = tmp_path / "never-written"
    created: list[str] = []
    with pytest.raises(OSError):
        store.put_files([(good, "originals/aa/a"), (gone, "originals/bb/b")], created)
    assert created == ["originals/aa/a"]
    assert not store.exists("originals/bb/b")


def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.open(objects.original_key(SHA))
    assert store.size(objects.original_key(SHA)) is None
    assert not store.exists(objects.original_key(SHA))


def test_delete_and_list_by_prefix(store: ObjectStore, tmp_path: Path) -> None:
    keys = [*objects.photo_keys(SHA), objects.comparison_key("1-2-3")]
    for i, key in enumerate(keys):
        objects.put_file(store, _temp(tmp_path, f"object {i}".encode()), key)
    assert sorted(store.keys("originals/")) == [objects.original_key(SHA)]
    assert sorted(store.keys("derived/")) == sorted(keys[1:])
    assert list(store.keys("derived/comparisons/")) == [objects.comparison_key("1-2-3")]
    store.delete([keys[0], keys[1], "originals/ff/not-there"])
    assert not store.exists(keys[0]) and not store.exists(keys[1])
    assert store.exists(keys[2])
    assert sorted(store.keys("")) == sorted(keys[2:])


def test_open_streams_in_chunks(store: ObjectStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    objects.put_file(store, _temp(tmp_path, data), objects.original_key(SHA))
    with store.open(objects.original_key(SHA)) as f:
        chunks = iter(lambda: f.read(256 * 1024), b"")
        assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(data).digest()


def test_writable(store: ObjectStore) -> None:
    assert store.writable()


# --- S3 only: what the store going away and bad settings get ---------------------------------


def _s3_settings(tmp_path: Path, endpoint: str, bucket: str) -> Settings:
    return Settings(
        upload_dir=tmp_path / "uploads", storage="s3", s3_endpoint=endpoint, s3_bucket=bucket
    )


def test_a_missing_bucket_names_the_setting(
    s3_server: MotoServer,
    s3_credentials: None,
    tmp_path: Path,
) -> None:
    store = objects.open_store(_s3_settings(tmp_path, s3_server.endpoint, "no-such-bucket"))
    with pytest.raises(
        StoreNotUsable, match=r"GRIDPROOF_S3_BUCKET.*no-such-bucket.*does not exist"
    ):
        store.check()
    assert not store.writable()


def test_an_empty_bucket_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreNotUsable, match="GRIDPROOF_S3_BUCKET"):
        objects.open_store(_s3_settings(tmp_path, "http://127.0.0.1:9", ""))


@pytest.fixture
def doomed_server(s3_credentials: None) -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


def test_a_store_that_went_away_is_unavailable(doomed_server: MotoServer, tmp_path: Path) -> None:
    bucket = doomed_server.new_bucket()
    store = objects.open_store(_s3_settings(tmp_path, doomed_server.endpoint, bucket))
    assert isinstance(store, S3Store)
    objects.put_file(store, _temp(tmp_path, b"kept"), objects.original_key(SHA))
    doomed_server.kill()
    temp = _temp(tmp_path, b"new")
    for attempt in (
        lambda: objects.put_file(store, temp, objects.derivative_key(SHA, "thumb")),
        lambda: store.open(objects.original_key(SHA)),
        lambda: store.size(objects.original_key(SHA)),
        lambda: store.delete([objects.original_key(SHA)]),
        lambda: list(store.keys("originals/")),
    ):
        with pytest.raises(StorageUnavailable):
            attempt()
    assert not store.writable()
    with pytest.raises(StoreNotUsable, match="GRIDPROOF_S3_ENDPOINT"):
        store.check()
