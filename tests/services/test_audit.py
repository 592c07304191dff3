"""The audit trail: one event per change, in the same transaction, on a verifiable hash chain.

The hashes are recomputed here from the canonical form the README documents, without calling
`audit.event_hash`, so these tests check the documentation as much as the code.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import get_engine
from app.models import IssueEvent, Photo, User
from app.models.issue import TransitionRequest
from app.services import audit
from app.services.issues import apply_transition
from tests.factories import Zone, act, add_photos, after_jpeg, files, jpeg, report

GENESIS = "0" * 64
CANONICAL_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
Issue = dict[str, Any]


# --- Helpers ---------------------------------------------------------------------------------


@contextmanager
def own_session(settings: Settings) -> Iterator[Session]:
    """A short-lived session, so that no read of the test holds SQLite's write lock."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        yield session


def stored_events(settings: Settings, issue_id: int) -> list[IssueEvent]:
    with own_session(settings) as session:
        return audit.events_of(session, issue_id)


def problems_of(settings: Settings, issue_id: int) -> list[str]:
    return audit.chain_problems(stored_events(settings, issue_id))


def count_rows(settings: Settings, model: Any, issue_id: int) -> int:
    with own_session(settings) as session:
        query = select(func.count()).select_from(model).where(model.issue_id == issue_id)
        return session.exec(query).one()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def get(client: TestClient, zone: Zone, issue_id: int, username: str = "d_super") -> Issue:
    issue: Issue = ok(client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers(username)))
    return issue


def api_events(client: TestClient, zone: Zone, issue_id: int, username: str = "auditor") -> Any:
    return client.get(f"/api/v1/issues/{issue_id}/events", headers=zone.headers(username))


def canonical_at(text: str) -> str:
    """Any ISO 8601 time with an offset, as the README's canonical form: UTC with microseconds."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, text
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def documented_hash(issue_id: int, event: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON, exactly as the README spells it out."""
    body = {
        "issue_id": issue_id,
        "seq": event["seq"],
        "at": canonical_at(event["at"]),
        "actor": event["actor"],
        "action": event["action"],
        "from_status": event["from_status"],
        "to_status": event["to_status"],
        "note": event["note"],
        "data": event["data"],
        "prev_hash": event["prev_hash"],
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_errors(issue_id: int, events: list[dict[str, Any]]) -> list[str]:
    """Everything wrong with a chain as the events API shows it, checked by hand."""
    errors = []
    if [e["seq"] for e in events] != list(range(1, len(events) + 1)):
        errors.append(f"seq {[e['seq'] for e in events]}")
    prev = GENESIS
    for event in events:
        if event["prev_hash"] != prev:
            errors.append(f"event {event['seq']}: prev_hash {event['prev_hash']} != {prev}")
        if documented_hash(issue_id, event) != event["hash"]:
            errors.append(f"event {event['seq']}: hash differs from the documented form")
        if not CANONICAL_AT.match(event["at"]):
            errors.append(f"event {event['seq']}: at {event['at']!r} is not the canonical form")
        prev = event["hash"]
    return errors


def future(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


# --- One event per change --------------------------------------------------------------------


def test_every_report_photo_and_transition_appends_exactly_one_event(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = ok(report(client, zone), 201)
    issue_id = issue["id"]

    def transition(username: str, action: str, **body: Any) -> Callable[[], Any]:
        return lambda: ok(act(client, zone, username, get(client, zone, issue_id), action, **body))

    def photo(username: str, kind: str, seed: int, **form: Any) -> Callable[[], Any]:
        blob = jpeg(seed=seed)
        return lambda: ok(add_photos(client, zone, username, issue_id, kind, blob, **form), 201)

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("add_photos", photo("grid_worker", "before", 11)),
        ("accept", transition("d_super", "accept")),
        ("dispatch", transition("d_super", "dispatch", org_unit="A")),
        ("add_photos", photo("a_worker", "after", 12, note="清理后")),
        ("submit_rectification", transition("a_worker", "submit_rectification", note="已清理完毕")),
        ("add_photos", photo("d_super", "verification", 13)),
        ("verify_fail", transition("d_super", "verify_fail", note="角落仍有残留")),
        ("add_photos", photo("a_worker", "after", 14)),
        ("submit_rectification", transition("a_worker", "submit_rectification")),
        ("verify_pass", transition("d_super", "verify_pass")),
        ("reopen", transition("d_super", "reopen", note="又贴上了")),
        (
            "extend_deadline",
            transition("d_super", "extend_deadline", note="延期", deadline=future(days=20)),
        ),
        ("return", transition("a_worker", "return", note="不属于本办事处")),
    ]
    assert count_rows(settings, IssueEvent, issue_id) == 1
    for number, (action, step) in enumerate(steps, start=2):
        step()
        assert count_rows(settings, IssueEvent, issue_id) == number, action
        # Each change bumps the version in the same commit as its event.
        assert get(client, zone, issue_id)["version"] == number, action

    events = ok(api_events(client, zone, issue_id))
    assert [e["action"] for e in events] == ["report", *(action for action, _ in steps)]
    assert [e["seq"] for e in events] == list(range(1, len(steps) + 2))
    assert events[0]["prev_hash"] == GENESIS
    assert (events[0]["from_status"], events[0]["to_status"]) == (None, "reported")
    assert [(e["from_status"], e["to_status"]) for e in events if e["action"] == "dispatch"] == [
        ("accepted", "dispatched")
    ]
    assert events[-1]["to_status"] == get(client, zone, issue_id)["status"] == "accepted"
    assert [e["note"] for e in events[4:6]] == ["清理后", "已清理完毕"]
    assert chain_errors(issue_id, events) == []
    assert problems_of(settings, issue_id) == []


def test_the_chain_of_an_on_the_spot_fix_holds(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = ok(report(client, zone, after=[after_jpeg(seed=21)], description="已当场撕除"), 201)
    events = ok(api_events(client, zone, issue["id"]))
    assert [(e["action"], e["to_status"]) for e in events] == [("report", "rectified")]
    assert events[0]["data"]["on_the_spot"] is True
    assert chain_errors(issue["id"], events) == []


def test_event_times_are_shown_in_the_canonical_form_even_on_a_whole_second(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = ok(report(client, zone), 201)
    whole_second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    with own_session(settings) as session:
        supervisor = session.get(User, zone.users["d_super"].id)
        assert supervisor is not None
        request = TransitionRequest(action="accept")
        apply_transition(
            session, settings, supervisor, issue["id"], request, version=1, now=whole_second
        )
    events = ok(api_events(client, zone, issue["id"]))
    assert events[1]["at"] == whole_second.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert chain_errors(issue["id"], events) == []


def test_failed_requests_append_no_event(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = ok(report(client, zone), 201)
    url = f"/api/v1/issues/{issue['id']}/transitions"

    def post(body: dict[str, Any], if_match: str | None = '"1"', user: str = "d_super") -> Any:
        extra = {"If-Match": if_match} if if_match is not None else {}
        return client.post(url, json=body, headers=zone.headers(user, **extra))

    failures = [
        (post({"action": "verify_pass"}), 409),  # not from reported
        (post({"action": "submit_rectification"}), 409),
        (post({"action": "accept"}, if_match='"7"'), 412),
        (post({"action": "accept"}, if_match=None), 428),
        (post({"action": "accept"}, user="a_worker"), 403),
        (post({"action": "reject"}), 422),
        (post({"action": "dispatch", "org_unit": "B"}, user="a_super"), 403),
        (post({"action": "dispatch", "org_unit": "A", "deadline": future(hours=-1)}), 422),
    ]
    gif = files("files", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", filename="x.gif")
    upload = client.post(
        f"/api/v1/issues/{issue['id']}/photos",
        data={"kind": "before"},
        files=gif,
        headers=zone.headers("grid_worker"),
    )
    failures.append((upload, 415))
    after_too_early = add_photos(client, zone, "a_worker", issue["id"], "after")
    failures.append((after_too_early, 409))
    assert [r.status_code for r, _ in failures] == [status for _, status in failures], [
        r.text for r, _ in failures
    ]
    assert count_rows(settings, IssueEvent, issue["id"]) == 1
    assert count_rows(settings, Photo, issue["id"]) == 1
    assert get(client, zone, issue["id"])["version"] == 1
    assert problems_of(settings, issue["id"]) == []


def test_idempotent_replays_append_no_event(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    blob = jpeg(seed=31)
    first = report(client, zone, photos=[blob], headers={"Idempotency-Key": "report-31"})
    again = report(client, zone, photos=[blob], headers={"Idempotency-Key": "report-31"})
    assert ok(first, 201)["id"] == ok(again, 201)["id"]
    issue_id = first.json()["id"]
    photo = jpeg(seed=32)
    for _ in range(2):
        response = client.post(
            f"/api/v1/issues/{issue_id}/photos",
            data={"kind": "before"},
            files=files("files", photo),
            headers=zone.headers("grid_worker", **{"Idempotency-Key": "photo-32"}),
        )
        ok(response, 201)
    assert count_rows(settings, IssueEvent, issue_id) == 2
    assert count_rows(settings, Photo, issue_id) == 2
    assert problems_of(settings, issue_id) == []


# --- chain_problems finds tampering ----------------------------------------------------------


def _issue_with_four_events(client: TestClient, zone: Zone) -> int:
    issue = ok(report(client, zone), 201)
    issue = ok(act(client, zone, "d_super", issue, "accept"))
    issue = ok(act(client, zone, "d_super", issue, "dispatch", org_unit="A"))
    issue = ok(
        act(
            client,
            zone,
            "d_super",
            issue,
            "extend_deadline",
            note="等材料",
            deadline=future(days=10),
        )
    )
    issue_id: int = issue["id"]
    return issue_id


def _event_id(session: Session, issue_id: int, seq: int) -> int:
    query = select(IssueEvent.id).where(IssueEvent.issue_id == issue_id, IssueEvent.seq == seq)
    event_id = session.exec(query).one()
    assert event_id is not None
    return event_id


def _set(session: Session, issue_id: int, seq: int, **values: Any) -> None:
    event_id = _event_id(session, issue_id, seq)
    session.execute(update(IssueEvent).where(col(IssueEvent.id) == event_id).values(**values))


def _tamper_note(session: Session, issue_id: int) -> None:
    _set(session, issue_id, 4, note="按期完成")


def _tamper_data(session: Session, issue_id: int) -> None:
    _set(session, issue_id, 3, data={"org_unit": "B", "deadline": "2030-01-01T00:00:00.000000Z"})


def _tamper_at(session: Session, issue_id: int) -> None:
    event = session.get(IssueEvent, _event_id(session, issue_id, 2))
    assert event is not None
    _set(session, issue_id, 2, at=event.at - timedelta(hours=3))


def _delete_middle(session: Session, issue_id: int) -> None:
    event_id = _event_id(session, issue_id, 2)
    session.execute(delete(IssueEvent).where(col(IssueEvent.id) == event_id))


def _swap_hashes(session: Session, issue_id: int) -> None:
    second = session.get(IssueEvent, _event_id(session, issue_id, 2))
    third = session.get(IssueEvent, _event_id(session, issue_id, 3))
    assert second is not None and third is not None
    hashes = second.hash, third.hash
    _set(session, issue_id, 2, hash=hashes[1])
    _set(session, issue_id, 3, hash=hashes[0])


TAMPERINGS: dict[str, tuple[Callable[[Session, int], None], int]] = {
    # name: (what is done, the first event whose line must name it)
    "note changed": (_tamper_note, 4),
    "data changed": (_tamper_data, 3),
    "at changed": (_tamper_at, 2),
    "middle event deleted": (_delete_middle, 3),
    "hashes swapped": (_swap_hashes, 2),
}


def test_chain_problems_finds_each_kind_of_tampering(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    untouched = _issue_with_four_events(client, zone)
    targets = {name: _issue_with_four_events(client, zone) for name in TAMPERINGS}
    for name, (tamper, _seq) in TAMPERINGS.items():
        with own_session(settings) as session:
            tamper(session, targets[name])
            session.commit()

    assert problems_of(settings, untouched) == []
    missed = []
    for name, (_tamper, seq) in TAMPERINGS.items():
        issue_id = targets[name]
        problems = problems_of(settings, issue_id)
        if not any(f"issue {issue_id} event {seq}:" in line for line in problems):
            missed.append(f"{name}: {problems}")
        # The events API shows the same damage to anyone checking by hand.
        shown = ok(api_events(client, zone, issue_id))
        if chain_errors(issue_id, shown) == []:
            missed.append(f"{name}: the events API chain still checks out")
    assert missed == []


# --- Who may read the trail ------------------------------------------------------------------


def test_who_may_read_the_events(client: TestClient, zone: Zone) -> None:
    issue = ok(report(client, zone), 201)  # reported by grid_worker in A1G, office A
    expected = {
        "d_super": 200,
        "a_super": 200,
        "auditor": 200,
        "admin": 200,
        "grid_worker": 200,  # the reporter
        "viewer": 403,
        "a_worker": 403,  # sees the issue, but did not report it
        "b_worker": 404,  # cannot see it
        "b_super": 404,
    }
    got = {user: api_events(client, zone, issue["id"], user).status_code for user in expected}
    assert got == expected
    for user in ("viewer", "a_worker", "b_worker"):
        response = api_events(client, zone, issue["id"], user)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == {403: "forbidden", 404: "not_found"}[expected[user]]
    assert len(ok(api_events(client, zone, issue["id"], "grid_worker"))) == 1
