"""The sweep: what dead requests left, and stored objects nothing uses.

Run by `gridproof sweep`, at the server's startup and every `sweep_interval_s` in the server,
one at a time across replicas (`claims.sweep_lock`). It removes

- temp files of this replica's local folder whose lock it can take (their request is gone,
  even one killed a moment ago: see `app/services/storage.py`);
- expired claims (`app/services/claims.py`: a request that died, on any replica), and then
  the originals and derivatives of their SHA-256s, unless a live claim has them or a
  committed photo row does (a request killed after putting its objects and before
  committing its rows);
- with `stored=True` (the command, the periodic sweep): every original and derivative in the
  object store whose SHA-256 no committed photo row has and no live claim has.

The checks and the removal of each batch run in one transaction under the SHA-256s' locks,
as when a request gives up (`Claim.release_and_remove`): a request that claims the bytes
afterwards finds them gone and stores them again. Should the store refuse a removal, the
batch's transaction rolls back (the expired claims stay) and the next sweep retries.
Comparison images (`derived/comparisons/`) are a cache and are kept.
"""

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings
from app.errors import logger
from app.services import claims
from app.services.objects import (
    DERIVATIVES,
    DERIVED,
    ORIGINALS,
    ObjectStore,
    open_store,
    photo_keys,
)
from app.services.storage import Storage

_ORIGINAL = re.compile(r"originals/[0-9a-f]{2}/([0-9a-f]{64})")
_DERIVED = re.compile(rf"derived/[0-9a-f]{{2}}/([0-9a-f]{{64}})\.({'|'.join(DERIVATIVES)})\.jpg")
# SHA-256s checked and removed per transaction.
BATCH = 500


@dataclass
class SweepReport:
    temps: list[Path] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)  # "claim <sha256> <token>"
    stored: list[str] = field(default_factory=list)  # keys of the object store
    dry_run: bool = False

    @property
    def paths(self) -> list[str]:
        return [*map(str, self.temps), *self.claims, *self.stored]

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {len(self.temps)} temp file(s), {len(self.claims)} dead claim(s), "
            f"{len(self.stored)} unreferenced original(s) and derivative(s)"
        )


def sweep(settings: Settings, *, stored: bool = True, dry_run: bool = False) -> SweepReport:
    """Remove (with `dry_run`: only list) what no live request and no committed photo uses."""
    storage = Storage(settings.upload_dir)
    with claims.sweep_lock(settings, storage, wait=True):
        return _sweep(settings, storage, stored=stored, dry_run=dry_run)


def _sweep(settings: Settings, storage: Storage, *, stored: bool, dry_run: bool) -> SweepReport:
    store = open_store(settings)
    report = SweepReport(dry_run=dry_run)
    report.temps = storage.dead_temps(remove=not dry_run)
    dead = claims.expired(settings)
    report.claims = [f"claim {sha} {token}" for sha, token in dead]
    found: dict[str, set[str]] = {}  # SHA-256 → its keys in the store, where listed
    if stored:
        for key in store.keys(ORIGINALS):
            _add_listed(found, key)
        for key in store.keys(DERIVED):
            _add_listed(found, key)
    for sha, _token in dead:
        found.setdefault(sha, set())
    ordered = sorted(found)
    for batch in (ordered[i : i + BATCH] for i in range(0, len(ordered), BATCH)):
        report.stored += _unused_objects(settings, store, {s: found[s] for s in batch}, dry_run)
    return report


def _add_listed(found: dict[str, set[str]], key: str) -> None:
    match = _ORIGINAL.fullmatch(key) or _DERIVED.fullmatch(key)
    if match:
        found.setdefault(match[1], set()).add(key)


def _unused_objects(
    settings: Settings, store: ObjectStore, batch: dict[str, set[str]], dry_run: bool
) -> list[str]:
    """The objects of these SHA-256s that nobody uses, removed (with their expired claims)
    unless `dry_run`. Keys not listed (those of expired claims) are looked up."""
    shas = set(batch)
    with claims.locked(settings, shas) as connection:
        if not dry_run:
            claims.drop_expired(connection, shas)
        unused = shas - claims.live_claimed(connection, shas) - claims.used(connection, shas)
        keys = sorted(
            key
            for sha in unused
            for key in (batch[sha] or {k for k in photo_keys(sha) if store.exists(k)})
        )
        if not dry_run:
            store.delete(keys)
    return keys


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
    """A full sweep, unless another process or replica is sweeping."""
    storage = Storage(settings.upload_dir)
    with claims.sweep_lock(settings, storage, wait=False) as ours:
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
