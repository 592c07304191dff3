"""Idempotency-Key handling for the POSTs that may be retried: reports, photos, transitions."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, select

from app.errors import IdempotencyConflict, ValidationFailed
from app.models import IdempotencyRecord, User

MAX_KEY_LENGTH = 200


def check_key(key: str | None) -> str | None:
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise ValidationFailed(f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters")
    return key


def fingerprint(fields: dict[str, Any], file_hashes: dict[str, list[str]]) -> str:
    """What makes two requests 'the same': their form fields and the bytes of their files."""
    body = {"fields": fields, "files": file_hashes}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def find(session: Session, user: User, key: str) -> IdempotencyRecord | None:
    query = select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user.id, IdempotencyRecord.key == key
    )
    return session.exec(query).first()


def first_result(
    session: Session, user: User, key: str | None, request_sha256: Callable[[], str]
) -> dict[str, Any] | None:
    """What the first request with this key answered; None when the key is new (or absent),
    a conflict when it was used for another request. `request_sha256` is this request's
    fingerprint, computed only when the key was used before."""
    if key is None:
        return None
    record = find(session, user, key)
    return None if record is None else replay(record, request_sha256())


def replay(record: IdempotencyRecord, request_sha256: str) -> dict[str, Any]:
    """The first request's result, or a conflict when this key was used for another request."""
    if record.request_sha256 != request_sha256:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used with a different request; use a new key"
        )
    return record.result


def remember(
    session: Session, user: User, key: str, request_sha256: str, result: dict[str, Any]
) -> None:
    assert user.id is not None
    session.add(
        IdempotencyRecord(user_id=user.id, key=key, request_sha256=request_sha256, result=result)
    )
