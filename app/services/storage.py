"""Content-addressed photo storage on the local disk: originals and derivatives by SHA-256,
and the spool that an upload is copied into as it arrives (where the photo pipeline starts)."""

import fcntl
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.config import Settings
from app.errors import PhotoTooLarge

DERIVATIVES = ("thumb", "large")
CHUNK = 1024 * 1024
# A temp file this old belongs to no upload in progress (a 10 MB photo at 20 kB/s takes 9 min).
STALE_TEMP_S = 3600


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.claims_dir = root / "claims"  # see Claim

    def ensure_dirs(self) -> None:
        for sub in ("tmp", "claims", "originals", "derived"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def original_path(self, sha256: str) -> Path:
        return self.root / "originals" / sha256[:2] / sha256

    def derivative_path(self, sha256: str, size: str) -> Path:
        assert size in DERIVATIVES
        return self.root / "derived" / sha256[:2] / f"{sha256}.{size}.jpg"

    def files(self, sha256: str) -> list[Path]:
        """Where the original and the derivatives of these bytes are stored."""
        return [self.original_path(sha256), *(self.derivative_path(sha256, d) for d in DERIVATIVES)]

    def claimed(self, sha256: str) -> bool:
        """Whether a request in progress claims these bytes (call under `claims_locked`)."""
        return any(self.claims_dir.glob(f"{sha256}.*"))

    @contextmanager
    def claims_locked(self) -> Iterator[None]:
        """An exclusive lock on the claims folder (flock), across threads (each call opens the
        folder anew) and processes."""
        self.claims_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.claims_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def open_temp(self, prefix: str = "up-") -> tuple[Path, BinaryIO]:
        """A new file in the storage's own tmp folder (same file system, so rename is atomic)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=prefix)
        return Path(name), os.fdopen(fd, "w+b")

    def commit(self, temp: Path, final: Path) -> bool:
        """Move a finished temp file into place; False when identical bytes were already there."""
        created: list[Path] = []
        self.commit_all([(temp, final)], created)
        return bool(created)

    def commit_all(self, moves: list[tuple[Path, Path]], created: list[Path]) -> None:
        """Move finished temp files into place: each is fsynced and renamed, then each folder
        that got one is fsynced once. Where the final path exists, identical bytes are there
        already and the temp file is removed. What is moved is added to `created` at once, so
        that the caller can remove it should a later move fail."""
        moved: list[Path] = []
        for temp, final in moves:
            if final.exists():
                temp.unlink()
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(temp, final)
            created.append(final)
            moved.append(final)
        for folder in dict.fromkeys(path.parent for path in moved):
            _fsync_dir(folder)

    def remove_stale_temps(self, older_than_s: float = STALE_TEMP_S) -> int:
        """Remove temp files and claims left by a server that stopped mid-upload (killed, out
        of memory); a request removes its own on any failure it lives through. Returns how
        many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in [*self.tmp_dir.glob("*"), *self.claims_dir.glob("*")]:
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass  # removed meanwhile by the request that owns it
        return removed

    def writable(self) -> bool:
        try:
            path, f = self.open_temp()
        except OSError:
            return False
        f.close()
        path.unlink()
        return True


# --- Uploads spooled into storage ------------------------------------------------------------


@dataclass(frozen=True)
class SpooledPhoto:
    """An upload copied into storage's tmp folder, within the size cap: where the pipeline
    starts. The HTTP layer streams multipart file parts straight into one."""

    path: Path
    size: int
    head: bytes  # the first bytes, which name the format


Upload = BinaryIO | SpooledPhoto


class PhotoSpool:
    """Copies one upload into a storage temp file, capping its size on the way.

    It is not hashed here: the HTTP process is the one every request goes through, so the
    work done per byte stays with the decoding (the photo pipeline hashes the spooled file, in a
    decoding process under `gridproof serve`)."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.path, self.file = storage.open_temp()
        self._settings = settings
        self._size = 0
        self._head = b""

    def write(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        if self._size > self._settings.max_upload_bytes:
            raise PhotoTooLarge(
                f"the photo is larger than {self._settings.max_upload_mb:g} MB",
                max_bytes=self._settings.max_upload_bytes,
            )
        if len(self._head) < 64:
            self._head += bytes(data[: 64 - len(self._head)])
        self.file.write(data)

    def finish(self) -> SpooledPhoto:
        """The spooled photo; the file stays open, flushed and rewound."""
        self.file.flush()
        self.file.seek(0)
        return SpooledPhoto(self.path, self._size, self._head)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def sha256_of(upload: Upload) -> str:
    """The upload's SHA-256, read from its spooled file or from the file object."""
    return (
        sha256_of_path(upload.path) if isinstance(upload, SpooledPhoto) else sha256_of_file(upload)
    )


def spool_file(upload: BinaryIO, settings: Settings, storage: Storage) -> SpooledPhoto:
    """Copy a file object into storage's tmp folder in chunks (within the size cap)."""
    upload.seek(0)
    spool = PhotoSpool(settings, storage)
    try:
        with spool.file:
            while chunk := upload.read(CHUNK):
                spool.write(chunk)
            return spool.finish()
    except BaseException:
        spool.discard()
        raise


class Claim:
    """The SHA-256s one request stores: each claimed before the photo's files are moved into
    place (or found there), until the request has committed or given up.

    Files are content-addressed, so two requests with the same bytes share them: the second
    finds them stored and creates nothing. Should the first then fail, it must not remove files
    that the second is about to reference; should both fail, the last must remove them. So a
    request that gives up removes a SHA-256's files only when no other request claims it and no
    committed photo uses it. A claim is a marker file in `claims/`, taken, checked and removed
    under a lock on the claims folder, which holds across threads and across server processes
    on one machine (`--workers`): a claim taken after a removal finds the files gone and stores
    them again."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.token = secrets.token_hex(8)
        self.shas: set[str] = set()

    def add(self, sha256: str) -> None:
        if sha256 in self.shas:  # the same bytes twice in one request: claimed once
            return
        with self.storage.claims_locked():
            self._marker(sha256).touch()
        self.shas.add(sha256)

    def release(self) -> None:
        """The request has committed (or stored nothing): its rows reference what it stored."""
        for sha in self.shas:
            self._marker(sha).unlink(missing_ok=True)
        self.shas = set()

    def release_and_remove(self, used: Callable[[set[str]], set[str]]) -> None:
        """The request gives up: remove the files of its SHA-256s that nobody else needs.
        `used` gives those of the SHA-256s that committed photos use (read from a snapshot
        taken meanwhile: it runs under the lock)."""
        with self.storage.claims_locked():
            shas = self.shas
            self.release()
            unclaimed = {sha for sha in shas if not self.storage.claimed(sha)}
            in_use = used(unclaimed) if unclaimed else set()
            remove_quietly([path for sha in unclaimed - in_use for path in self.storage.files(sha)])

    def _marker(self, sha256: str) -> Path:
        return self.storage.claims_dir / f"{sha256}.{self.token}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def sha256_of_path(path: Path) -> str:
    with open(path, "rb") as f:
        return sha256_of_file(f)


def sha256_of_file(f: BinaryIO) -> str:
    """SHA-256 of an open file, read from the start in chunks."""
    f.seek(0)
    digest = hashlib.sha256()
    while chunk := f.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
