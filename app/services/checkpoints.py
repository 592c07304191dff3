"""Signed checkpoints of the audit chains: what lets an outsider anchor the trail.

A hash chain proves order only against a head the auditor already trusts: a log re-chained
from scratch holds together. So the server signs chain heads with an Ed25519 key of its own
(settings.audit_key_path, made at the first start, never in the repository) and publishes the
public key and the signatures (GET /api/v1/audit/checkpoints). A head signed once must stay in
the chain: re-chaining the events after it changes the hash at that seq, which no longer
matches the signature an auditor holds (or the evidence ZIP ships).

The signed bytes are the canonical JSON (keys sorted, separators "," and ":") of
{"type": "gridproof-checkpoint-v1", "issue_id", "seq", "hash", "signed_at"} with `signed_at`
as the audit trail writes times (UTC, microseconds, "Z").

When: every head not yet signed, at each server start and then every
`checkpoint_interval_hours` (a thread of each server process: no cron needed; processes that
sign at once sign each head once), by `gridproof checkpoint`, and an issue's head whenever its
evidence ZIP is made.
"""

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import and_, exists, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import get_engine
from app.errors import Forbidden
from app.models import AuditCheckpoint, Issue, IssueEvent, User
from app.models.base import utcnow
from app.models.checkpoint import CheckpointPage, CheckpointPublic
from app.services import audit
from app.services.permissions import EVIDENCE_READERS, visible_issues

TYPE = "gridproof-checkpoint-v1"
logger = logging.getLogger("gridproof")
_key_lock = threading.Lock()
_loaded: dict[Path, Ed25519PrivateKey] = {}


def private_key(settings: Settings) -> Ed25519PrivateKey:
    """The signing key, made once (mode 0600, never overwritten) where settings say."""
    path = settings.audit_key_path
    with _key_lock:
        if path in _loaded and path.exists():
            return _loaded[path]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first
            else:
                with os.fdopen(fd, "wb") as file:
                    file.write(pem)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey), f"{path} is not an Ed25519 key"
        _loaded[path] = key
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def message(issue_id: int, seq: int, head_hash: str, signed_at: str) -> bytes:
    body = {"type": TYPE, "issue_id": issue_id, "seq": seq, "hash": head_hash}
    body["signed_at"] = signed_at
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _message_of(row: AuditCheckpoint) -> bytes:
    return message(row.issue_id, row.seq, row.hash, audit.canonical_at(row.signed_at))


def public(row: AuditCheckpoint) -> CheckpointPublic:
    return CheckpointPublic(
        issue_id=row.issue_id,
        seq=row.seq,
        hash=row.hash,
        signed_at=audit.canonical_at(row.signed_at),
        key_id=row.key_id,
        signature=row.signature,
        message=_message_of(row).decode(),
    )


def sign_heads(
    session: Session, settings: Settings, issue_id: int | None = None, now: datetime | None = None
) -> int:
    """Sign every chain head not signed yet (or only this issue's); commits; how many."""
    now = now or utcnow()
    key = private_key(settings)
    last = (
        select(IssueEvent.issue_id, func.max(IssueEvent.seq).label("seq"))
        .group_by(col(IssueEvent.issue_id))
        .subquery()
    )
    signed = exists().where(
        and_(
            col(AuditCheckpoint.issue_id) == last.c.issue_id, col(AuditCheckpoint.seq) == last.c.seq
        )
    )
    query = (
        select(IssueEvent)
        .join(
            last,
            and_(col(IssueEvent.issue_id) == last.c.issue_id, col(IssueEvent.seq) == last.c.seq),
        )
        .where(~signed)
        .order_by(col(IssueEvent.issue_id))
    )
    if issue_id is not None:
        query = query.where(IssueEvent.issue_id == issue_id)
    heads = list(session.exec(query))
    for head in heads:
        session.add(_signed_row(key, head, now))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another process signed some of these heads at the same moment
        return 0
    return len(heads)


def sign_bundle_head(settings: Settings, head: IssueEvent) -> list[AuditCheckpoint]:
    """Sign the head an evidence bundle ships (if not signed yet), in a session of its own
    on the writing engine (the bundle is read on the read-only one); returns the issue's
    checkpoints up to that head."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        if not _signed(session, head.issue_id, head.seq):
            session.add(_signed_row(private_key(settings), head, utcnow()))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # signed by a concurrent request meanwhile
        return [row for row in of_issue(session, head.issue_id) if row.seq <= head.seq]


def _signed(session: Session, issue_id: int, seq: int) -> bool:
    query = select(AuditCheckpoint.id).where(
        AuditCheckpoint.issue_id == issue_id, AuditCheckpoint.seq == seq
    )
    return session.exec(query).first() is not None


def _signed_row(key: Ed25519PrivateKey, head: IssueEvent, now: datetime) -> AuditCheckpoint:
    signature = key.sign(message(head.issue_id, head.seq, head.hash, audit.canonical_at(now)))
    return AuditCheckpoint(
        signed_at=now,
        issue_id=head.issue_id,
        seq=head.seq,
        hash=head.hash,
        signature=signature.hex(),
        key_id=key_id(key.public_key()),
    )


def of_issue(session: Session, issue_id: int) -> list[AuditCheckpoint]:
    query = select(AuditCheckpoint).where(AuditCheckpoint.issue_id == issue_id)
    return list(session.exec(query.order_by(col(AuditCheckpoint.id))))


def checkpoint_problems(
    settings: Settings, where: str, events: list[IssueEvent], signed: list[AuditCheckpoint]
) -> list[str]:
    """Each signed head against the signature and the chain as it is now."""
    public_key = private_key(settings).public_key()
    kid = key_id(public_key)
    by_seq = {event.seq: event for event in events}
    problems = []
    for row in signed:
        at = audit.canonical_at(row.signed_at)
        what = f"{where}: the checkpoint of event {row.seq} signed at {at}"
        if row.key_id != kid:
            problems.append(f"{what} is by key {row.key_id}, not this server's {kid}")
        elif not _valid(public_key, row):
            problems.append(f"{what} has a signature that does not verify")
        event = by_seq.get(row.seq)
        if event is None:
            problems.append(f"{what}: the chain has no event {row.seq} (deleted after signing)")
        elif event.hash != row.hash:
            problems.append(
                f"{what}: event {row.seq} now hashes to {event.hash}, signed {row.hash} "
                "(re-chained after signing)"
            )
    return problems


def listing(
    session: Session,
    settings: Settings,
    user: User,
    *,
    issue_id: int | None = None,
    after: int = 0,
    limit: int = 500,
) -> CheckpointPage:
    """The checkpoints of issues the caller may see, oldest first, from `after` (an id)."""
    if user.role not in EVIDENCE_READERS:
        raise Forbidden("checkpoints are for supervisors, auditors and admins")
    query = (
        select(AuditCheckpoint)
        .join(Issue, col(Issue.id) == AuditCheckpoint.issue_id)
        .where(visible_issues(session, user), col(AuditCheckpoint.id) > after)
        .order_by(col(AuditCheckpoint.id))
        .limit(limit + 1)
    )
    if issue_id is not None:
        query = query.where(AuditCheckpoint.issue_id == issue_id)
    rows = list(session.exec(query))
    key = private_key(settings).public_key()
    more = len(rows) > limit
    return CheckpointPage(
        public_key_pem=public_key_pem(key),
        key_id=key_id(key),
        items=[public(row) for row in rows[:limit]],
        next_cursor=rows[limit - 1].id if more else None,
    )


def _valid(key: Ed25519PublicKey, row: AuditCheckpoint) -> bool:
    try:
        key.verify(bytes.fromhex(row.signature), _message_of(row))
    except (InvalidSignature, ValueError):
        return False
    return True


def bundle_files(settings: Settings, signed: list[AuditCheckpoint]) -> dict[str, Any]:
    """What the evidence ZIP ships for an offline check: the public key and the signatures."""
    key = private_key(settings).public_key()
    return {
        "public_key_pem": public_key_pem(key),
        "key_id": key_id(key),
        "checkpoints": [public(row).model_dump() for row in signed],
    }


def start(settings: Settings) -> Callable[[], None]:
    """At the server's start: make the key if there is none, sign every unsigned head, then
    again every `checkpoint_interval_hours` in a thread. Returns its stop."""
    private_key(settings)
    stopping = threading.Event()

    def every_interval() -> None:
        while True:
            _logged(settings)
            if stopping.wait(settings.checkpoint_interval_hours * 3600):
                return

    if not settings.checkpoint_thread:
        return lambda: None
    thread = threading.Thread(target=every_interval, name="gridproof-checkpoints", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=30)

    return stop


def _logged(settings: Settings) -> None:
    """A failed round is logged, never stops the server; the next one signs what it missed."""
    try:
        with Session(get_engine(settings.database_url)) as session:
            sign_heads(session, settings)
    except Exception:
        logger.exception("signing the audit checkpoints failed")
