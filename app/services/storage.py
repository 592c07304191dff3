"""Content-addressed photo storage on the local disk: originals and derivatives by SHA-256."""

import hashlib
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DERIVATIVES = ("thumb", "large")
CHUNK = 1024 * 1024
# A temp file this old belongs to no upload in progress (a 10 MB photo at 20 kB/s takes 9 min).
STALE_TEMP_S = 3600


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"

    def ensure_dirs(self) -> None:
        for sub in ("tmp", "originals", "derived"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def original_path(self, sha256: str) -> Path:
        return self.root / "originals" / sha256[:2] / sha256

    def derivative_path(self, sha256: str, size: str) -> Path:
        assert size in DERIVATIVES
        return self.root / "derived" / sha256[:2] / f"{sha256}.{size}.jpg"

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
        """Remove temp files left by a server that stopped mid-upload (killed, out of memory);
        a request removes its own on any failure it lives through. Returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.tmp_dir.glob("*"):
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


# The SHA-256s that requests in progress in this process have stored, or found stored, and
# will reference once they commit (every upload is stored by the one HTTP process).
_claimed: Counter[str] = Counter()
_claimed_lock = threading.Lock()


class Claim:
    """What one request stores, by SHA-256: taken before a photo's files are moved into place
    (or found there), held until the request has committed or given up.

    Files are content-addressed, so two requests with the same bytes share them: the second
    finds them stored and creates nothing. Should the first then fail, it must not remove files
    that the second is about to reference. A request that gives up removes the files it created
    only when no other request claims their SHA-256 and no committed row uses it, checked and
    removed under one lock: a claim taken afterwards finds the files gone and stores them
    again."""

    def __init__(self) -> None:
        self.created: dict[str, list[Path]] = {}

    def add(self, sha256: str) -> None:
        if sha256 in self.created:  # the same bytes twice in one request: claimed once
            return
        with _claimed_lock:
            _claimed[sha256] += 1
        self.created[sha256] = []

    def release(self) -> None:
        """The request has committed (or stored nothing): its rows reference what it stored."""
        with _claimed_lock:
            self._release()

    def release_and_remove(self, used: Callable[[set[str]], set[str]]) -> None:
        """The request gives up: remove what it created that nobody else needs. `used` gives
        those of the SHA-256s that committed rows reference."""
        with _claimed_lock:
            created = self.created
            self._release()
            unclaimed = {sha for sha in created if not _claimed[sha]}
            in_use = used(unclaimed) if unclaimed else set()
            remove_quietly([path for sha in unclaimed - in_use for path in created.get(sha, [])])

    def _release(self) -> None:
        for sha in self.created:
            _claimed[sha] -= 1
            if not _claimed[sha]:
                del _claimed[sha]
        self.created = {}


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
