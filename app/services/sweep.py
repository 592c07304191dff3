"""The sweep: what dead requests left in the uploads folder, and stored files nothing uses.

Run by `gridproof sweep`, at the server's startup and every `sweep_interval_s` in the server.
A request holds each temp file and claim marker it has under flock while it lives (see
`app/services/storage.py`); the sweep removes

- temp files whose lock it can take (their request is gone, even one killed a moment ago);
- claim markers likewise, and then the originals and derivatives of their SHA-256s, unless a
  live request claims them or a committed photo row has them (a request killed after moving
  its photo into place and before committing its rows);
- with `stored=True` (the command, the periodic sweep): every original and derivative whose
  SHA-256 no committed photo row has and no live request claims.

The claim check and the database read run under the claims' lock, as when a request gives up
(`Claim.release_and_remove`): a request that claims the bytes afterwards finds them gone and
stores them again. Comparison images (`derived/comparisons/`) are a cache and are kept.
"""

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, col, select

from app.config import Settings
from app.db import get_read_engine
from app.errors import logger
from app.models.photo import Photo
from app.services.storage import DERIVATIVES, Storage, remove_quietly

_SHA = re.compile(r"[0-9a-f]{64}")
_DERIVED = re.compile(rf"([0-9a-f]{{64}})\.({'|'.join(DERIVATIVES)})\.jpg")
# SHA-256s checked against the database per statement (and per hold of the claims' lock).
BATCH = 500


@dataclass
class SweepReport:
    temps: list[Path] = field(default_factory=list)
    claims: list[Path] = field(default_factory=list)
    stored: list[Path] = field(default_factory=list)
    dry_run: bool = False

    @property
    def paths(self) -> list[Path]:
        return [*self.temps, *self.claims, *self.stored]

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {len(self.temps)} temp file(s), {len(self.claims)} dead claim(s), "
            f"{len(self.stored)} unreferenced original(s) and derivative(s)"
        )


def sweep(settings: Settings, *, stored: bool = True, dry_run: bool = False) -> SweepReport:
    """Remove (with `dry_run`: only list) what no live request and no committed photo uses."""
    storage = Storage(settings.upload_dir)
    with storage.sweeping():
        return _sweep(settings, storage, stored=stored, dry_run=dry_run)


def _sweep(settings: Settings, storage: Storage, *, stored: bool, dry_run: bool) -> SweepReport:
    report = SweepReport(dry_run=dry_run)
    report.temps = storage.dead_temps(remove=not dry_run)
    with storage.claims_locked():
        report.claims = storage.dead_claims()
        if not dry_run:
            remove_quietly(report.claims)
    shas = {marker.name.split(".", 1)[0] for marker in report.claims}
    if stored:
        shas |= set(stored_shas(storage))
    report.stored = _unused_files(settings, storage, sorted(shas), dry_run)
    return report


def stored_shas(storage: Storage) -> Iterator[str]:
    """The SHA-256s of the originals and derivatives on disk."""
    for folder in _fanout(storage.root / "originals"):
        for path in folder.iterdir():
            if _SHA.fullmatch(path.name):
                yield path.name
    for folder in _fanout(storage.root / "derived"):
        for path in folder.iterdir():
            if match := _DERIVED.fullmatch(path.name):
                yield match[1]


def _fanout(root: Path) -> list[Path]:
    """The two-hex-digit folders that content-addressed files are kept in."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if re.fullmatch(r"[0-9a-f]{2}", p.name) and p.is_dir())


def _unused_files(
    settings: Settings, storage: Storage, shas: Iterable[str], dry_run: bool
) -> list[Path]:
    removed: list[Path] = []
    ordered = list(dict.fromkeys(shas))
    for batch in (ordered[i : i + BATCH] for i in range(0, len(ordered), BATCH)):
        with storage.claims_locked():
            live = storage.live_claims()
            unclaimed = {sha for sha in batch if sha not in live}
            unused = unclaimed - used_shas(settings, unclaimed) if unclaimed else set()
            paths = [path for sha in sorted(unused) for path in storage.files(sha) if path.exists()]
            if not dry_run:
                remove_quietly(paths)
        removed += paths
    return removed


def used_shas(settings: Settings, shas: set[str]) -> set[str]:
    """Those of the SHA-256s that committed photos have, read from a fresh snapshot on the
    engine of reads (on SQLite it waits for no writer: this runs under the claims' lock)."""
    with Session(get_read_engine(settings.database_url)) as reader:
        return set(reader.exec(select(Photo.sha256).where(col(Photo.sha256).in_(shas))))


# --- In the server ----------------------------------------------------------------------------


def start(settings: Settings) -> Callable[[], None]:
    """At the server's startup: sweep what an earlier server left (temp files, dead claims and
    their files), then sweep fully every `sweep_interval_s` in a thread. Returns its stop."""
    _logged(lambda: sweep(settings, stored=False))
    if not settings.sweep_interval_s:
        return lambda: None
    stopping = threading.Event()

    def every_interval() -> None:
        while not stopping.wait(settings.sweep_interval_s):
            _logged(lambda: _periodic(settings))

    thread = threading.Thread(target=every_interval, name="gridproof-sweep", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=30)

    return stop


def _periodic(settings: Settings) -> SweepReport | None:
    """A full sweep, unless another process of the server is sweeping (`--workers`)."""
    storage = Storage(settings.upload_dir)
    with storage.sweeping(wait=False) as ours:
        return _sweep(settings, storage, stored=True, dry_run=False) if ours else None


def _logged(run: Callable[[], SweepReport | None]) -> None:
    """Housekeeping never stops the server: a failure is logged, and the next round retries."""
    try:
        report = run()
    except Exception:
        logger.exception("sweeping the uploads folder failed")
        return
    if report is not None and report.paths:
        logger.warning("%s: %s", report.summary(), ", ".join(map(str, report.paths)))
