"""Evidence for one issue: the JSON an auditor reads and the ZIP bundle they keep."""

import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from app.config import Settings
from app.models import Issue, IssueEvent, Photo, User
from app.services import audit, checkpoints
from app.services.comparison import comparison_jpeg
from app.services.geo import distance_m
from app.services.objects import ObjectStore, open_store, original_key
from app.services.photos import EXTENSIONS, format_of_content_type
from app.services.present import events_public, issue_public, photos_public
from app.services.storage import CHUNK
from app.services.verification import stored_sha256

README = """Evidence bundle for issue {code} (id {issue_id}), as of {as_of} (its last event).

manifest.json   the issue, every photo (SHA-256, EXIF, location and its source, flags,
                uploader, times), the audit events and whether their chain held when this
                bundle was made (chain_valid); each original was re-hashed when the bundle
                was made (original_sha256_matches) and only those that match are included
events.json     the audit trail alone
originals/      every photo exactly as uploaded, named <sha256>.<ext>
comparison.jpg  the first before-photo and the latest after-photo side by side
checkpoints.json  the server's Ed25519 signatures of this issue's chain heads (one made
                with this bundle), public_key.pem the key they verify under
verify_bundle.py  checks all of this offline with Python's standard library only

Check everything:     python3 verify_bundle.py --public-key <the key as published>
  (exit 0: OK; 1: one FAIL line per problem). Get the public key yourself
  (GET /api/v1/audit/checkpoints, or from the operator) and keep the checkpoints you saved
  earlier (--checkpoints saved.json): a chain re-written after a head was signed no longer
  holds the hash that was signed, and fails.

Check the photos:     cd originals && for f in *; do echo "${{f%.*}}  $f"; done | sha256sum -c
Check the audit chain: for each event in events.json, in order of seq,
  hash == sha256(JSON of {{issue_id, seq, at, actor, action, from_status, to_status, note,
                           data, prev_hash}} with keys sorted, separators "," and ":", UTF-8)
  (issue_id = {issue_id}; `at` exactly as given), the first prev_hash is 64 zeros and every
  other prev_hash is the previous event's hash.
"""


RECIPE = Path(__file__).with_name("bundle_recipe") / "verify_bundle.py"


def photo_filename(photo: Photo) -> str:
    return f"originals/{photo.sha256}.{EXTENSIONS[format_of_content_type(photo.content_type)]}"


def evidence(
    session: Session,
    settings: Settings,
    issue: Issue,
    viewer: User,
    now: datetime,
    *,
    english: bool = False,
) -> dict[str, Any]:
    """The issue, its photos, its events with their chain, and chain_valid recomputed now;
    each stored original re-hashed (original_sha256_matches: null when the file is missing).

    Nothing in it is the time of asking: the same state gives the same bytes (the route's ETag
    is their hash), and `as_of` is the time of the last event, which the chain covers.
    """
    assert issue.id is not None
    photos = list(
        session.exec(select(Photo).where(Photo.issue_id == issue.id).order_by(col(Photo.id)))
    )
    events = audit.events_of(session, issue.id)
    problems = audit.chain_problems(events)
    store = open_store(settings)
    photo_entries = []
    # No signed links in a record kept: the same state gives the same bytes.
    publics = photos_public(session, photos, links=None, english=english)
    for row, public in zip(photos, publics, strict=True):
        entry = public.model_dump(mode="json")
        entry["file"] = photo_filename(row)
        entry["distance_from_issue_m"] = (
            round(distance_m(row.lat, row.lon, issue.lat, issue.lon), 1)
            if row.lat is not None and row.lon is not None
            else None
        )
        entry["original_sha256_matches"] = _original_matches(store, row)
        photo_entries.append(entry)
    answer = issue_public(session, issue, viewer, now, links=None, english=english)
    return {
        "issue": answer.model_dump(mode="json"),
        "photos": photo_entries,
        "events": [e.model_dump(mode="json") for e in events_public(events)],
        "chain_valid": bool(events) and not problems,
        "chain_problems": problems,
        "originals_rehashed": True,
        "as_of": audit.canonical_at(_as_of(issue, events)),
    }


def _original_matches(store: ObjectStore, photo: Photo) -> bool | None:
    actual = stored_sha256(store, photo.sha256)
    return actual == photo.sha256 if actual is not None else None


def _as_of(issue: Issue, events: list[IssueEvent]) -> datetime:
    return events[-1].at if events else issue.reported_at


def bundle(
    session: Session, settings: Settings, issue: Issue, viewer: User, now: datetime
) -> Iterator[bytes]:
    """The ZIP, prepared now (rows read, comparison made) and streamed file by file."""
    assert issue.id is not None
    manifest = evidence(session, settings, issue, viewer, now)
    events = audit.events_of(session, issue.id)
    heads = checkpoints.sign_bundle_head(settings, events[-1]) if events else []
    signed = checkpoints.bundle_files(settings, heads)
    # Only originals that hash to their name, as re-hashed for the manifest.
    shipped = {p["file"] for p in manifest["photos"] if p["original_sha256_matches"]}
    originals = {}
    for photo in session.exec(select(Photo).where(Photo.issue_id == issue.id)):
        if photo_filename(photo) in shipped:
            originals[photo_filename(photo)] = original_key(photo.sha256)
    texts = {
        "manifest.json": json.dumps(manifest, ensure_ascii=False, indent=2),
        "events.json": json.dumps(manifest["events"], ensure_ascii=False, indent=2),
        "README.txt": README.format(code=issue.code, issue_id=issue.id, as_of=manifest["as_of"]),
        "checkpoints.json": json.dumps(signed, indent=2),
        "public_key.pem": signed["public_key_pem"],
        "verify_bundle.py": RECIPE.read_text(),
    }
    files = {**originals, "comparison.jpg": comparison_jpeg(session, settings, issue)}
    # Stamped with the state's time, not the request's: the same state, the same bytes.
    at = datetime.fromisoformat(manifest["as_of"])
    return _stream_zip(open_store(settings), texts, files, at)


class _Sink:
    """A write-only stream that hands over what was written since the last drain."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _stream_zip(
    store: ObjectStore, texts: dict[str, str], files: dict[str, str], at: datetime
) -> Iterator[bytes]:
    """Yield a ZIP as it is written, each stored object streamed from the store: memory holds
    one chunk of one file at a time."""
    sink = _Sink()
    stamp = at.astimezone(UTC).timetuple()[:6]
    with zipfile.ZipFile(sink, "w") as archive:  # type: ignore[call-overload]
        for name, text in texts.items():
            info = zipfile.ZipInfo(name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode())
            yield sink.drain()
        for name, key in files.items():
            info = zipfile.ZipInfo(name, stamp)  # photos are compressed already: stored as-is
            with archive.open(info, "w", force_zip64=True) as entry, store.open(key) as source:
                while chunk := source.read(CHUNK):
                    entry.write(chunk)
                    yield sink.drain()
            yield sink.drain()
    yield sink.drain()
