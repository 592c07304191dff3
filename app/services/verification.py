"""`gridproof verify`: re-hash every stored original, re-derive its derivatives, re-check
every audit chain, and compare each issue and its photos with what the chain records."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import OriginalCorrupted
from app.models import Issue, Photo
from app.services import audit, chain_check
from app.services.photos import derive_again
from app.services.storage import Storage, sha256_of_path


@dataclass
class Checked:
    photos: int = 0
    issues: int = 0


def verify(
    session: Session, settings: Settings, issue_id: int | None = None
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
