"""`gridproof verify`: re-hash every stored original (read from the object store, whichever
backend), re-derive its derivatives, re-check
every audit chain (the issues' and the chain of awarded flags), and compare each issue and its
photos with what the chain records."""

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import OriginalCorrupted
from app.models import Issue, Photo
from app.services import audit, chain_check, checkpoints, flag_text, rankings_flags
from app.services.objects import (
    ObjectMissing,
    ObjectStore,
    derivative_key,
    open_store,
    original_key,
    read_bytes,
)
from app.services.photos import RECIPES, derive_again
from app.services.storage import Storage, sha256_of_file


@dataclass
class Checked:
    photos: int = 0
    issues: int = 0


def verify(
    session: Session, settings: Settings, issue_id: int | None = None, derivatives: bool = True
) -> tuple[list[str], Checked]:
    """Every problem found, one line each, and how much was checked."""
    storage, store = Storage(settings.upload_dir), open_store(settings)
    problems: list[str] = []
    checked = Checked()
    photos = select(Photo).order_by(col(Photo.id))
    issues = select(Issue).order_by(col(Issue.id))
    if issue_id is not None:
        photos = photos.where(Photo.issue_id == issue_id)
        issues = issues.where(Issue.id == issue_id)
    hashed: dict[str, str | None] = {}
    derived: dict[str, list[str]] = {}
    for photo in session.exec(photos):
        checked.photos += 1
        if photo.sha256 not in hashed:
            hashed[photo.sha256] = stored_sha256(store, photo.sha256)
        actual = hashed[photo.sha256]
        if actual is None:
            problems.append(f"photo {photo.id} (issue {photo.issue_id}): original file is missing")
        elif actual != photo.sha256:
            problems.append(
                f"photo {photo.id} (issue {photo.issue_id}): original bytes hash to {actual}, "
                f"recorded {photo.sha256}"
            )
        elif not derivatives:
            derived.setdefault(photo.sha256, [])
        elif photo.sha256 not in derived:
            derived[photo.sha256] = _derivative_problems(settings, storage, store, photo.sha256)
        if actual == photo.sha256:
            problems.extend(
                f"photo {photo.id} (issue {photo.issue_id}): {problem}"
                for problem in derived[photo.sha256]
            )
    for issue in session.exec(issues):
        assert issue.id is not None
        checked.issues += 1
        chain = audit.events_of(session, issue.id)
        if not chain:
            problems.append(f"issue {issue.id} ({issue.code}): has no audit events")
        problems.extend(audit.chain_problems(chain))
        rows = list(
            session.exec(select(Photo).where(Photo.issue_id == issue.id).order_by(col(Photo.id)))
        )
        problems.extend(chain_check.issue_problems(session, issue, chain, rows))
        signed = checkpoints.of_issue(session, issue.id)
        where = f"issue {issue.id} ({issue.code})"
        problems.extend(checkpoints.checkpoint_problems(settings, where, chain, signed))
    if issue_id is None:
        # The command's flag decisions form a chain of their own (services/rankings_flags.py).
        problems.extend(rankings_flags.chain_problems(session))
    return problems, checked


def _derivative_problems(
    settings: Settings, storage: Storage, store: ObjectStore, sha256: str
) -> list[str]:
    """Each stored derivative against the ones the pipeline makes of the original now: with the
    newest recipe, else with an older one (a derivative stored before the recipe changed)."""
    stored: dict[str, bytes | None] = {}
    problems: list[str] = []
    for recipe in RECIPES:
        again = derive_again(sha256, settings, storage, store, recipe)
        for name in again.keys() - stored.keys():
            try:
                stored[name] = read_bytes(store, derivative_key(sha256, name))
            except ObjectMissing:
                stored[name] = None
        mismatched = [name for name, expected in again.items() if stored[name] != expected]
        if not mismatched:
            return []
        if recipe is RECIPES[0]:  # what is wrong is told against the newest recipe
            problems = [_mismatch(name, stored[name], again[name]) for name in mismatched]
    return problems


def _mismatch(name: str, stored: bytes | None, expected: bytes) -> str:
    if stored is None:
        return f"{name} derivative is missing"
    return (
        f"{name} derivative (sha256 {hashlib.sha256(stored).hexdigest()}) is not what "
        f"the original derives to ({hashlib.sha256(expected).hexdigest()})"
    )


def issue_verdict(session: Session, settings: Settings, issue: Issue) -> dict[str, Any]:
    """Whether one issue's evidence holds now: its chain, its rows against the chain, its
    signed checkpoints and its originals (the derivatives are `gridproof verify`'s)."""
    assert issue.id is not None
    store = open_store(settings)
    where = f"issue {issue.id} ({issue.code})"
    chain = audit.events_of(session, issue.id)
    rows = list(
        session.exec(select(Photo).where(Photo.issue_id == issue.id).order_by(col(Photo.id)))
    )
    signed = checkpoints.of_issue(session, issue.id)
    chain_problems = audit.chain_problems(chain) or ([] if chain else [f"{where}: no events"])
    problems = chain_problems + chain_check.issue_problems(session, issue, chain, rows)
    problems += checkpoints.checkpoint_problems(settings, where, chain, signed)
    for photo in rows:
        actual = stored_sha256(store, photo.sha256)
        if actual != photo.sha256:
            problems.append(f"{where}: photo {photo.id} original is missing or changed")
    last = checkpoints.public(signed[-1]).model_dump() if signed else None
    return {
        # The photos' flags as the sentences a person reads (flag_text), by photo id.
        "flag_sentences": {str(p.id): _sentences(issue, p) for p in rows},
        "issue_id": issue.id,
        "code": issue.code,
        "valid": not problems,
        "chain_valid": not chain_problems,
        "events": len(chain),
        "problems": problems,
        "checkpoints": len(signed),
        "last_checkpoint": last,
    }


def _sentences(issue: Issue, photo: Photo) -> list[dict[str, str]]:
    facts = flag_text.PhotoFacts(
        lat=photo.lat,
        lon=photo.lon,
        gps_lat=photo.exif.get("gps_lat"),
        gps_lon=photo.exif.get("gps_lon"),
        taken_at=photo.taken_at,
        uploaded_at=photo.uploaded_at,
        software=photo.exif.get("software"),
        issue_lat=issue.lat,
        issue_lon=issue.lon,
    )
    return flag_text.describe(photo.flags, facts)


def verified_original(store: ObjectStore, photo: Photo) -> str:
    """The key of the photo's original, re-hashed: its ETag and file name are its SHA-256, so
    bytes that no longer hash to it are never sent (OriginalCorrupted); missing: the key."""
    actual = stored_sha256(store, photo.sha256)
    if actual is not None and actual != photo.sha256:
        raise OriginalCorrupted(f"photo {photo.id}: the stored original does not match")
    return original_key(photo.sha256)


def stored_sha256(store: ObjectStore, sha256: str) -> str | None:
    """The SHA-256 of the original stored under this hash, read back from the store; None
    when it is missing."""
    try:
        source = store.open(original_key(sha256))
    except ObjectMissing:
        return None
    with source:
        return sha256_of_file(source)
