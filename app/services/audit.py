"""The audit trail: each issue's events form a SHA-256 hash chain.

hash = sha256(canonical JSON of the event, prev_hash included). Canonical JSON: the keys
issue_id, seq, at, actor, action, from_status, to_status, note, data, prev_hash; keys sorted,
separators "," and ":", non-ASCII kept as UTF-8, `at` in UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ.
The first event's prev_hash is 64 zeros.

What an event's `data` records is covered with it: the report names the issue's code, category,
description, address and place, and every photo event names each photo's facts (`photo_facts`:
kind, SHA-256, capture time, EXIF facts, place and its source, flags), so that `gridproof verify`
can compare the rows an auditor reads with the chain (services/chain_check.py).
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from app.models import Issue, IssueEvent, Photo, User
from app.services import webhooks

GENESIS = "0" * 64


def canonical_at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(event: IssueEvent) -> bytes:
    body = {
        "issue_id": event.issue_id,
        "seq": event.seq,
        "at": canonical_at(event.at),
        "actor": event.actor,
        "action": event.action,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "note": event.note,
        "data": event.data,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: IssueEvent) -> str:
    return hashlib.sha256(canonical_json(event)).hexdigest()


def photo_facts(photo: Photo) -> dict[str, Any]:
    """What a photo event records of each photo: every fact an auditor reads of it."""
    return {
        "id": photo.id,
        "kind": photo.kind,
        "sha256": photo.sha256,
        "taken_at": photo.taken_at,
        "exif": photo.exif,
        "lat": photo.lat,
        "lon": photo.lon,
        "location_source": photo.location_source,
        "flags": list(photo.flags),
    }


def append_event(
    session: Session,
    issue: Issue,
    actor: User,
    action: str,
    at: datetime,
    *,
    from_status: str | None = None,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> IssueEvent:
    """Add the next event of the issue's chain to the session (the caller commits)."""
    assert issue.id is not None and actor.id is not None
    last = session.exec(
        select(IssueEvent)
        .where(IssueEvent.issue_id == issue.id)
        .order_by(col(IssueEvent.seq).desc())
        .limit(1)
    ).first()
    event = IssueEvent(
        issue_id=issue.id,
        seq=last.seq + 1 if last else 1,
        at=at,
        actor_id=actor.id,
        actor=actor.username,
        action=action,
        from_status=from_status,
        to_status=issue.status,
        note=note,
        data=data or {},
        prev_hash=last.hash if last else GENESIS,
        hash="",
    )
    event.hash = event_hash(event)
    session.add(event)
    # Every change passes here: its webhook deliveries join the same transaction.
    webhooks.enqueue_for_event(session, issue, event)
    return event


def events_of(session: Session, issue_id: int) -> list[IssueEvent]:
    query = select(IssueEvent).where(IssueEvent.issue_id == issue_id).order_by(col(IssueEvent.seq))
    return list(session.exec(query))


def chain_problems(events: list[IssueEvent]) -> list[str]:
    """What is wrong with one issue's chain, in words; empty when it holds."""
    return link_problems(
        events, lambda e: f"issue {e.issue_id} event {e.seq}", event_hash, ("event", "an event")
    )


def link_problems(
    links: Iterable[Any],
    where: Callable[[Any], str],
    hash_of: Callable[[Any], str],
    noun: tuple[str, str],
) -> list[str]:
    """What is wrong with a hash chain of rows with seq, prev_hash and hash (issue events, flag
    awards); `noun`: what one link is called, bare and with its article."""
    problems = []
    prev = GENESIS
    for expected_seq, link in enumerate(links, start=1):
        at = where(link)
        if link.seq != expected_seq:
            problems.append(f"{at}: expected seq {expected_seq} ({noun[1]} is missing)")
        if link.prev_hash != prev:
            problems.append(f"{at}: prev_hash does not match the previous {noun[0]}'s hash")
        if hash_of(link) != link.hash:
            problems.append(f"{at}: hash does not match the {noun[0]}'s content")
        prev = link.hash
    return problems
