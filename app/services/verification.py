"""`gridproof verify`: re-hash every stored original and re-check every audit chain (the
issues' and the chain of awarded flags)."""

from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Issue, Photo
from app.services import audit, rankings_flags
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
    issues = select(Issue.id).order_by(col(Issue.id))
    if issue_id is not None:
        photos = photos.where(Photo.issue_id == issue_id)
        issues = issues.where(Issue.id == issue_id)
    hashed: dict[str, str | None] = {}
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
    for current_id in session.exec(issues):
        assert current_id is not None
        checked.issues += 1
        chain = audit.events_of(session, current_id)
        if not chain:
            problems.append(f"issue {current_id}: has no audit events")
        problems.extend(audit.chain_problems(chain))
    if issue_id is None:
        # The command's flag decisions form a chain of their own (services/rankings_flags.py).
        problems.extend(rankings_flags.chain_problems(session))
    return problems, checked


def _sha256_of(storage: Storage, sha256: str) -> str | None:
    path = storage.original_path(sha256)
    return sha256_of_path(path) if path.exists() else None
