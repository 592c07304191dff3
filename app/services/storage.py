"""This replica's local upload folder: the temp files an upload is spooled into as it arrives
(where the photo pipeline starts) and its derivatives are written to, before they go into the
object store (app/services/objects.py, which with storage=local keeps its objects in the same
folder).

Each temp file a request writes (`Storage.open_temp`) is held under an exclusive `flock` for
as long as the request is live. The kernel drops the locks of a process that dies, however it
dies (`kill -9`, the OOM killer), so a sweep (`app/services/sweep.py`) tells what a dead
request left from what a live one uses by taking each file's lock without waiting, across the
server's processes (`--workers`), at once. Temp files are per machine, and so is this: what
requests claim in the shared store is in the database (app/services/claims.py).
"""

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.config import Settings
from app.errors import PhotoTooLarge

CHUNK = 1024 * 1024
# The temp files `Storage.open_temp` makes, each under its owner's lock; a derivative's is named
# after its upload's (`<upload's name>-…`) and lives as long as that one does.
TEMP_PREFIX = "up-"
# Temp files of other names (the ledger exports', written and read by path by code that holds
# no lock on them) belong to no request when this old.
STALE_TEMP_S = 3600


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"

    def ensure_dirs(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def open_temp(self, prefix: str = TEMP_PREFIX) -> tuple[Path, BinaryIO]:
        """A new file in the storage's own tmp folder (same file system, so rename is atomic),
        under an exclusive flock for as long as the file object is open: keep it open until
        the file is moved into place or removed. It is made under a shared lock of the folder
        (the sweep takes it exclusively), so no sweep sees it before it is locked."""
        assert prefix.startswith(TEMP_PREFIX)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.tmp_dir, fcntl.LOCK_SH):
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=prefix)
            fcntl.flock(fd, fcntl.LOCK_EX)
        return Path(name), os.fdopen(fd, "w+b")

    def dead_temps(self, remove: bool) -> list[Path]:
        """The temp files of requests that are gone, removed unless `remove` is False.

        A file of `open_temp` is live while its lock is held, or, for a derivative's, while its
        upload's file is live (a decoding process writes it and returns; the request moves it
        into place before its upload's, and removes it before giving the upload up). Other
        names: by age (`STALE_TEMP_S`)."""
        if not self.tmp_dir.is_dir():
            return []
        with _locked(self.tmp_dir, fcntl.LOCK_EX):
            paths = sorted(path for path in self.tmp_dir.iterdir() if not path.is_dir())
            live: dict[str, bool | None] = {}
            for path in paths:  # uploads before their derivatives: the names sort so
                live[path.name] = _temp_live(path, live)
            dead = [path for path in paths if live[path.name] is False]
            if remove:
                remove_quietly(dead)
        return dead

    @contextmanager
    def sweeping(self, wait: bool = True) -> Iterator[bool]:
        """One sweep of this folder at a time, across processes: yields False (without waiting)
        when `wait` is False and another sweep is under way."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

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
    """Copy a file object into storage's tmp folder in chunks (within the size cap). The temp
    file is closed, so no lock holds it: a request's use `spooled_copy`."""
    with spooled_copy(upload, settings, storage) as spooled:
        return spooled


@contextmanager
def spooled_copy(upload: BinaryIO, settings: Settings, storage: Storage) -> Iterator[SpooledPhoto]:
    """Copy a file object into storage's tmp folder, and keep that temp file open (so locked,
    see `Storage.open_temp`) until the block ends; it is removed when the block fails. A
    seekable file is read from its start, any other (a stored object's stream) as it is."""
    if upload.seekable():
        upload.seek(0)
    spool = PhotoSpool(settings, storage)
    try:
        with spool.file:
            while chunk := upload.read(CHUNK):
                spool.write(chunk)
            yield spool.finish()
    except BaseException:
        spool.discard()
        raise


def held_by_another(path: Path) -> bool | None:
    """Whether some open file holds `path` under flock: True, False, or None when it is gone.
    (Any other open file, this process's too: flock belongs to the open file description.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _temp_live(path: Path, live: dict[str, bool | None]) -> bool | None:
    """Whether a temp file belongs to a live request (see `Storage.dead_temps`): None when it
    is gone meanwhile (moved into place or removed by its request); `live` has the answers
    for the names that sort before it."""
    if not path.name.startswith(TEMP_PREFIX):
        try:
            return path.stat().st_mtime > time.time() - STALE_TEMP_S
        except FileNotFoundError:
            return None
    upload = path.name.rsplit("-", 1)[0]
    if upload in live and live[upload] is not False:  # its upload's: live, or moved meanwhile
        return True
    return held_by_another(path)


@contextmanager
def _locked(folder: Path, operation: int) -> Iterator[None]:
    """A flock on a folder, held for the block (each call opens it anew: a lock of its own)."""
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


def remove_quietly(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def sha256_of_path(path: Path) -> str:
    with open(path, "rb") as f:
        return sha256_of_file(f)


def sha256_of_file(f: BinaryIO) -> str:
    """SHA-256 of an open file, read from the start in chunks (a stream: as it comes)."""
    if f.seekable():
        f.seek(0)
    digest = hashlib.sha256()
    while chunk := f.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
