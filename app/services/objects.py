"""The object store: where originals, derivatives and comparison images are kept, behind one
interface (`ObjectStore`) with two backends, the local folder (the embedded default,
`LocalStore`) and S3-compatible object storage (`app/services/storage_s3.py`).

Objects are named by keys, the same under both backends (and the same as the local folder's
paths under `upload_dir`, so existing installs keep working):

    originals/ab/<sha256>                 the uploaded bytes (content-addressed, immutable)
    derived/ab/<sha256>.<size>.jpg        the derivatives (thumb, large), likewise
    derived/comparisons/<key>.jpg         the before/after comparison images (a cache)

Every object is written once from a finished local temp file (`put_files`) and never
overwritten: a key that exists holds identical bytes already (its name is their hash, or the
photos the comparison shows, which are immutable). Temp and spool files stay in the replica's
local folder (`app/services/storage.py`). Read a derivative with
`store.open(derivative_key(sha256, size))`, send one with `app.etags.send_object`.

A store that is down or refuses raises `StorageUnavailable` (503 with Retry-After); a key that
is not there raises `ObjectMissing`.
"""

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from app.config import Settings

DERIVATIVES = ("thumb", "large")
ORIGINALS = "originals/"
DERIVED = "derived/"
COMPARISONS = "derived/comparisons/"


class ObjectMissing(KeyError):
    """No object under this key."""


class StoreNotUsable(RuntimeError):
    """The store that settings name cannot be used (at startup): the message names the setting."""


def original_key(sha256: str) -> str:
    return f"{ORIGINALS}{sha256[:2]}/{sha256}"


def derivative_key(sha256: str, size: str) -> str:
    assert size in DERIVATIVES
    return f"{DERIVED}{sha256[:2]}/{sha256}.{size}.jpg"


def comparison_key(name: str) -> str:
    return f"{COMPARISONS}{name}.jpg"


def photo_keys(sha256: str) -> list[str]:
    """The keys of the original and the derivatives of these bytes."""
    return [original_key(sha256), *(derivative_key(sha256, size) for size in DERIVATIVES)]


class ObjectStore(Protocol):
    """What the callers need of a store; both backends pass tests/services/test_objects.py."""

    def put_files(self, files: list[tuple[Path, str]], created: list[str]) -> None:
        """Store finished local temp files under their keys, write-once: a key that exists
        keeps its object (identical bytes) and the temp file is dropped. Each temp file is
        consumed (moved or removed); each key written is added to `created` at once, so that
        the caller can delete it should a later one fail."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The object's bytes as a readable file object (close it)."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, keys: Iterable[str]) -> None:
        """Delete these objects; keys that are not there are no error."""
        ...

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key that starts with `prefix`."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Where the object is on this machine's disk, if the backend keeps it there (so that
        it can be sent with sendfile); None for a remote store."""
        ...

    def check(self) -> None:
        """Fail with a clear message when the store cannot be used (at startup)."""
        ...

    def writable(self) -> bool:
        """The store answers and takes writes (health)."""
        ...


def put_file(store: ObjectStore, temp: Path, key: str) -> bool:
    """One temp file into the store; False when the key held its bytes already."""
    created: list[str] = []
    store.put_files([(temp, key)], created)
    return bool(created)


def read_bytes(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as f:
        return f.read()


def open_store(settings: Settings) -> ObjectStore:
    """The store that settings name (GRIDPROOF_STORAGE): the one way to get it."""
    if settings.storage == "s3":
        from app.services.storage_s3 import S3Store

        return S3Store.of(settings)
    return LocalStore(settings.upload_dir)


class LocalStore:
    """Objects as files under the upload folder: each moved into place by rename (fsynced, and
    each folder that got one fsynced once), so a crash leaves either the whole file or none."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        parts = key.split("/")
        assert key and all(part not in ("", ".", "..") for part in parts), key
        return self.root.joinpath(*parts)

    def put_files(self, files: list[tuple[Path, str]], created: list[str]) -> None:
        moved: list[Path] = []
        for temp, key in files:
            final = self.path(key)
            if final.exists():
                temp.unlink()
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(temp, final)
            created.append(key)
            moved.append(final)
        for folder in dict.fromkeys(path.parent for path in moved):
            _fsync_dir(folder)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> Iterator[str]:
        top = prefix.split("/", 1)[0]
        base = self.root / top
        if not base.is_dir():
            return
        for folder, _dirs, names in os.walk(base):
            relative = Path(folder).relative_to(self.root).as_posix()
            for name in sorted(names):
                key = f"{relative}/{name}"
                if key.startswith(prefix):
                    yield key

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def check(self) -> None:
        for top in (ORIGINALS, DERIVED):
            (self.root / top).mkdir(parents=True, exist_ok=True)

    def writable(self) -> bool:
        return os.access(self.root / ORIGINALS, os.W_OK)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
