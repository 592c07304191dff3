"""`gridproof verify`: re-hash every stored original, re-derive its derivatives, re-check
every audit chain, and compare each issue and its photos with what the chain records."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import OriginalCorrupted
from app.models import Issue, Photo
from app.services import audit, chain_check, checkpoints, flag_text
from app.services.photos import derive_again
from app.services.storage import Storage, sha256_of_path


@dataclass
class Checked:
    photos: int = 0
    issues: int = 0


def verify(
    session: Session, settings: Settings, issue_id: int | None = None, derivatives: bool = True
) -> tuple[list[str], Checked]:
    """Every problem found, one line each, and how much was checked."""
    storage = Storage(settings.upload_dir)
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
            hashed[photo.sha256] = _sha256_of(storage, photo.sha256)
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
            derived[photo.sha256] = _derivative_problems(settings, storage, photo.sha256)
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
    return problems, checked


def _derivative_problems(settings: Settings, storage: Storage, sha256: str) -> list[str]:
    """Each stored derivative against the one the pipeline makes of the original now."""
    again = derive_again(storage.original_path(sha256), settings, storage)
    problems = []
    for name, expected in again.items():
        path = storage.derivative_path(sha256, name)
        if not path.exists():
            problems.append(f"{name} derivative is missing")
        elif path.read_bytes() != expected:
            problems.append(
                f"{name} derivative (sha256 {sha256_of_path(path)}) is not what the original "
                f"derives to ({hashlib.sha256(expected).hexdigest()})"
            )
    return problems


def issue_verdict(session: Session, settings: Settings, issue: Issue) -> dict[str, Any]:
    """Whether one issue's evidence holds now: its chain, its rows against the chain, its
    signed checkpoints and its originals (the derivatives are `gridproof verify`'s)."""
    assert issue.id is not None
    storage = Storage(settings.upload_dir)
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
        actual = _sha256_of(storage, photo.sha256)
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


def verified_original(storage: Storage, photo: Photo) -> Path:
    """Where the photo's original is, re-hashed: its ETag and file name are its SHA-256, so
    bytes that no longer hash to it are never sent (OriginalCorrupted); missing: the path."""
    path = storage.original_path(photo.sha256)
    if path.exists() and sha256_of_path(path) != photo.sha256:
        raise OriginalCorrupted(f"photo {photo.id}: the stored original does not match")
    return path


def _sha256_of(storage: Storage, sha256: str) -> str | None:
    path = storage.original_path(sha256)
    return sha256_of_path(path) if path.exists() else None
