"""The state machine through the HTTP API: the transition table, If-Match, roles and effects.

The table tests iterate over `TRANSITIONS` instead of restating it, so a change to the table
is a change to what these tests expect.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from app.config import Settings
from app.db import get_engine
from app.models import IssueEvent, Role, User
from app.models.issue import IssueStatus, TransitionRequest
from app.services.issues import TRANSITIONS, Action, apply_transition
from tests.factories import (
    PROBLEM_JSON,
    ZONE_ORGS,
    ZONE_USERS,
    Zone,
    act,
    add_photos,
    after_jpeg,
    assert_problem,
    dispatched_issue,
    jpeg,
    rectified_issue,
    report,
)

S = IssueStatus
Issue = dict[str, Any]

# Who acts for each role in the table tests: both are in scope of every issue of office A.
ACTOR_FOR_ROLE = {Role.WORKER: "a_worker", Role.SUPERVISOR: "d_super"}


# --- Helpers ---------------------------------------------------------------------------------


def ok(response: Any, status: int = 200) -> Issue:
    assert response.status_code == status, response.text
    body: Issue = response.json()
    return body


def get(client: TestClient, zone: Zone, issue_id: int, username: str = "d_super") -> Issue:
    return ok(client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers(username)))


def event_count(client: TestClient, zone: Zone, issue_id: int) -> int:
    response = client.get(f"/api/v1/issues/{issue_id}/events", headers=zone.headers("d_super"))
    assert response.status_code == 200, response.text
    return len(response.json())


def upload_after(
    client: TestClient, zone: Zone, username: str, issue_id: int, seed: int | None = None
) -> None:
    """An after-photo: a fresh scene unless `seed` asks for a given one."""
    blobs = () if seed is None else (jpeg(seed=seed),)
    response = add_photos(client, zone, username, issue_id, "after", *blobs)
    assert response.status_code == 201, response.text


def submit(client: TestClient, zone: Zone, username: str, issue_id: int) -> Any:
    """submit_rectification at the issue's current version."""
    return act(client, zone, username, get(client, zone, issue_id), "submit_rectification")


def iso(moment: datetime) -> str:
    return moment.isoformat()


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def future(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def issue_in_status(
    client: TestClient, zone: Zone, status: IssueStatus, duplicate_of: int | None = None
) -> Issue:
    """A fresh issue (reported by grid_worker in A1G) driven into `status` through the API."""
    issue = ok(report(client, zone), 201)
    if status == S.REPORTED:
        return issue
    if status == S.ACCEPTED:
        return ok(act(client, zone, "d_super", issue, "accept"))
    if status == S.REJECTED:
        return ok(act(client, zone, "d_super", issue, "reject", note="不属于城市管理问题"))
    if status == S.DUPLICATE:
        if duplicate_of is None:
            duplicate_of = ok(report(client, zone), 201)["id"]
        return ok(act(client, zone, "d_super", issue, "mark_duplicate", duplicate_of=duplicate_of))
    issue = ok(act(client, zone, "d_super", issue, "dispatch", org_unit="A"))
    if status == S.DISPATCHED:
        return issue
    upload_after(client, zone, "a_worker", issue["id"])
    issue = get(client, zone, issue["id"], "a_worker")
    issue = ok(act(client, zone, "a_worker", issue, "submit_rectification"))
    if status == S.RECTIFIED:
        return issue
    issue = ok(act(client, zone, "d_super", issue, "verify_pass"))
    assert status == S.CLOSED and issue["status"] == S.CLOSED
    return issue


def every_status(client: TestClient, zone: Zone, original: int) -> dict[IssueStatus, Issue]:
    issues = {status: issue_in_status(client, zone, status, original) for status in S}
    assert {status: issue["status"] for status, issue in issues.items()} == {s: s for s in S}
    return issues


def needed_fields(action: Action, original: int) -> dict[str, Any]:
    """A body with every field the rule needs (and a deadline where one may be given)."""
    fields: dict[str, Any] = {
        "note": "按表操作",
        "org_unit": "A",
        "deadline": iso(future(days=30)),
        "duplicate_of": original,
    }
    wanted = set(TRANSITIONS[action].needs)
    if action == Action.DISPATCH:
        wanted.add("deadline")
    return {name: value for name, value in fields.items() if name in wanted}


# Org scoping, from the zone's definition: which units each user's unit contains.
_PARENT = {code: parent for code, _name, _kind, parent in ZONE_ORGS}
_USER_UNIT = {username: org for username, _role, org in ZONE_USERS}


def _within(unit: str, ancestor: str) -> bool:
    current: str | None = unit
    while current is not None:
        if current == ancestor:
            return True
        current = _PARENT[current]
    return False


def visible(issue: Issue, username: str) -> bool:
    return issue["reported_by"] == username or _within(issue["org_unit"], _USER_UNIT[username])


# What each user may do on the issues of `every_status`, written out by hand from the contract
# (not derived from TRANSITIONS, so that a wrong rule in the code is contradicted here). Issues
# before dispatch lie in grid A1G (the reporter's), the others in office A; a_worker rectified.
_SUPERVISING = {
    S.REPORTED: ["accept", "reject", "mark_duplicate", "dispatch"],
    S.ACCEPTED: ["reject", "mark_duplicate", "dispatch"],
    S.REJECTED: [],
    S.DUPLICATE: [],
    S.DISPATCHED: ["return", "extend_deadline", "request_extension", "submit_rectification"],
    S.RECTIFIED: ["verify_pass", "verify_fail"],
    S.CLOSED: ["reopen"],
}
EXPECTED_ACTIONS: dict[str, dict[IssueStatus, list[str]]] = {
    "d_super": _SUPERVISING,
    "a_super": _SUPERVISING,
    "a_worker": {
        s: ["return", "request_extension", "submit_rectification"] if s == S.DISPATCHED else []
        for s in S
    },
    "grid_worker": {s: [] for s in S},  # sees its reports, acts on none (A is above its grid)
    "viewer": {s: [] for s in S},
    "auditor": {s: [] for s in S},
}


@contextmanager
def own_session(settings: Settings) -> Iterator[Session]:
    """A short-lived session of its own, so that no test transaction blocks the API."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        yield session


# --- 1. The table, action by action and status by status --------------------------------------


def _attempt(
    client: TestClient, zone: Zone, action: Action, actor: str, issue: Issue, original: int
) -> str | None:
    """Try `action` on `issue` as `actor`; what went against the table, or None."""
    rule, status = TRANSITIONS[action], issue["status"]
    if action == Action.SUBMIT_RECTIFICATION and status == S.DISPATCHED:
        assert add_photos(client, zone, actor, issue["id"], "after").status_code == 201
        issue = get(client, zone, issue["id"])
    if rule.extension_pending and status == S.DISPATCHED:  # the office asks first
        asked = needed_fields(Action.REQUEST_EXTENSION, original)
        issue = ok(act(client, zone, "a_worker", issue, "request_extension", **asked))
    response = act(client, zone, actor, issue, action, **needed_fields(action, original))
    after = get(client, zone, issue["id"])
    if status in rule.sources:
        if (response.status_code, response.json().get("status")) != (200, rule.target):
            return f"{actor} from {status}: expected 200 {rule.target}, got {response.text}"
        if (after["status"], after["version"]) != (rule.target, issue["version"] + 1):
            return f"{actor} from {status}: stored {after['status']} v{after['version']}"
        if response.headers.get("etag") != f'"{issue["version"] + 1}"':
            return f"{actor} from {status}: ETag {response.headers.get('etag')}"
    else:
        if (response.status_code, response.json().get("code")) != (409, "invalid_transition"):
            return f"{actor} from {status}: expected 409 invalid_transition, got {response.text}"
        if not response.headers["content-type"].startswith(PROBLEM_JSON):
            return f"{actor} from {status}: content-type {response.headers['content-type']}"
        if (after["status"], after["version"]) != (status, issue["version"]):
            return f"{actor} from {status}: changed to {after['status']} v{after['version']}"
    # One event per version (tests/services/test_audit.py): so one more only when it moved on.
    if event_count(client, zone, issue["id"]) != after["version"]:
        return f"{actor} from {status}: events and version {after['version']} disagree"
    return None


@pytest.mark.parametrize("action", list(TRANSITIONS))
def test_each_action_from_each_status_follows_the_table(
    client: TestClient, zone: Zone, action: Action
) -> None:
    """Every status once per allowed role: 200 and the target from a source, else 409."""
    rule = TRANSITIONS[action]
    original = ok(report(client, zone), 201)["id"]
    issues = every_status(client, zone, original)
    wrong = []
    for role in sorted(rule.roles):
        actor = ACTOR_FOR_ROLE[role]
        for status in S:
            wrong.append(_attempt(client, zone, action, actor, issues[status], original))
            if status in rule.sources:  # moved on: the next role needs a fresh one
                issues[status] = issue_in_status(client, zone, status, original)
    assert [line for line in wrong if line] == []


# --- 2. allowed_actions is read off the same table -------------------------------------------


def test_allowed_actions_match_the_table_for_each_user_and_status(
    client: TestClient, zone: Zone
) -> None:
    original = ok(report(client, zone), 201)["id"]
    issues = every_status(client, zone, original)
    by_supervisor = ok(report(client, zone, "a_super", after=[after_jpeg(seed=5)]), 201)
    wrong = []
    for issue in issues.values():
        for username in ("d_super", "a_super", "a_worker", "grid_worker", "viewer", "auditor"):
            if not visible(issue, username):
                response = client.get(
                    f"/api/v1/issues/{issue['id']}", headers=zone.headers(username)
                )
                assert_problem(response, 404, "not_found")
                continue
            got = get(client, zone, issue["id"], username)["allowed_actions"]
            want = EXPECTED_ACTIONS[username][issue["status"]]
            if got != want:
                wrong.append(f"{username} on {issue['status']}: {got} != {want}")
            if username in ("viewer", "auditor") and got != []:
                wrong.append(f"{username} on {issue['status']}: {got}")
    assert wrong == []
    # Fixed on the spot by a supervisor: four eyes, so only another supervisor may check it.
    assert by_supervisor["status"] == S.RECTIFIED
    assert get(client, zone, by_supervisor["id"], "a_super")["allowed_actions"] == []
    assert get(client, zone, by_supervisor["id"], "d_super")["allowed_actions"] == [
        "verify_pass",
        "verify_fail",
    ]


# --- 3. If-Match, versions and ETags ---------------------------------------------------------


def test_if_match_is_required_and_checked(client: TestClient, zone: Zone) -> None:
    issue = ok(report(client, zone), 201)
    url = f"/api/v1/issues/{issue['id']}/transitions"
    accept = {"action": "accept"}

    missing = client.post(url, json=accept, headers=zone.headers("d_super"))
    assert_problem(missing, 428, "precondition_required")
    for header in ('"0"', '"2"', "abc", '"1.0"', ""):
        response = client.post(
            url, json=accept, headers=zone.headers("d_super", **{"If-Match": header})
        )
        assert_problem(response, 412, "version_conflict")
    assert get(client, zone, issue["id"])["version"] == 1
    assert event_count(client, zone, issue["id"]) == 1

    accepted = act(client, zone, "d_super", issue, "accept")
    assert ok(accepted)["version"] == 2
    assert accepted.headers["etag"] == '"2"'
    stale = act(client, zone, "d_super", issue, "dispatch", org_unit="A")
    assert assert_problem(stale, 412, "version_conflict")["current_version"] == 2

    dispatched = act(client, zone, "d_super", accepted.json(), "dispatch", org_unit="A")
    assert ok(dispatched)["version"] == 3
    assert dispatched.headers["etag"] == '"3"'

    read = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("d_super"))
    assert read.headers["etag"] == '"3"'
    cached = client.get(
        f"/api/v1/issues/{issue['id']}", headers=zone.headers("d_super", **{"If-None-Match": '"3"'})
    )
    assert cached.status_code == 304
    assert cached.content == b""
    changed = client.get(
        f"/api/v1/issues/{issue['id']}", headers=zone.headers("d_super", **{"If-None-Match": '"2"'})
    )
    assert changed.status_code == 200 and changed.json()["version"] == 3


def test_if_none_match_compares_weakly_and_accepts_a_list(client: TestClient, zone: Zone) -> None:
    """RFC 9110 13.1.2: weak comparison, a list of tags, or "*" (proxies make tags weak)."""
    issue = ok(report(client, zone), 201)
    url = f"/api/v1/issues/{issue['id']}"
    answers = {
        tag: client.get(url, headers=zone.headers("d_super", **{"If-None-Match": tag})).status_code
        for tag in ('"1"', 'W/"1"', '"7", "1"', "*", '"2"')
    }
    assert answers == {'"1"': 304, 'W/"1"': 304, '"7", "1"': 304, "*": 304, '"2"': 200}


# --- 4. Roles and scope ----------------------------------------------------------------------


def test_only_supervisors_accept_and_dispatch_and_readers_never_act(
    client: TestClient, zone: Zone
) -> None:
    reported = ok(report(client, zone), 201)
    dispatched = dispatched_issue(client, zone)
    upload_after(client, zone, "a_worker", dispatched["id"])
    dispatched = get(client, zone, dispatched["id"])
    attempts = [
        ("a_worker", reported, "accept", {}),
        ("a_worker", reported, "dispatch", {"org_unit": "A"}),
        ("grid_worker", reported, "reject", {"note": "自己撤回"}),
    ]
    for reader in ("viewer", "auditor", "admin"):
        attempts += [
            (reader, reported, "accept", {}),
            (reader, reported, "dispatch", {"org_unit": "A"}),
            (reader, dispatched, "submit_rectification", {}),
            (reader, dispatched, "return", {"note": "不归我们管"}),
        ]
    wrong = []
    for username, issue, action, body in attempts:
        response = act(client, zone, username, issue, action, **body)
        if (response.status_code, response.json().get("code")) != (403, "forbidden"):
            wrong.append(f"{username} {action}: {response.status_code} {response.text}")
    assert wrong == []
    assert (
        get(client, zone, reported["id"])["version"],
        event_count(client, zone, reported["id"]),
    ) == (1, 1)
    assert get(client, zone, dispatched["id"])["version"] == dispatched["version"]


def test_scope_an_invisible_issue_is_404_and_a_visible_one_out_of_scope_is_403(
    client: TestClient, zone: Zone
) -> None:
    issue = ok(report(client, zone), 201)  # grid A1G, office A: b_super cannot see it
    seen = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("b_super"))
    assert_problem(seen, 404, "not_found")
    assert_problem(act(client, zone, "b_super", issue, "accept"), 404, "not_found")
    assert get(client, zone, issue["id"])["version"] == 1

    # b_super still sees the issue it reported after it went to office A, but cannot act on it.
    own = ok(report(client, zone, "b_super"), 201)
    assert own["org_unit"] == "B"
    own = ok(act(client, zone, "d_super", own, "dispatch", org_unit="A"))
    mine = get(client, zone, own["id"], "b_super")
    assert mine["allowed_actions"] == []
    response = act(
        client,
        zone,
        "b_super",
        mine,
        "extend_deadline",
        note="再给一周",
        deadline=iso(future(days=7)),
    )
    assert_problem(response, 403, "forbidden")
    assert get(client, zone, own["id"])["version"] == own["version"]


def test_dispatch_outside_the_supervisors_subtree_is_forbidden(
    client: TestClient, zone: Zone
) -> None:
    issue = ok(report(client, zone), 201)
    for outside in ("B", "B1", "D"):
        response = act(client, zone, "a_super", issue, "dispatch", org_unit=outside)
        assert_problem(response, 403, "forbidden")
    assert get(client, zone, issue["id"])["version"] == 1
    assert event_count(client, zone, issue["id"]) == 1
    inside = ok(act(client, zone, "a_super", issue, "dispatch", org_unit="A1"))
    assert (inside["status"], inside["org_unit"]) == (S.DISPATCHED, "A1")


def test_the_rectifying_supervisor_cannot_verify_their_own_work(
    client: TestClient, zone: Zone
) -> None:
    issue = rectified_issue(client, zone, rectifier="a_super")
    assert issue["rectified_by"] == "a_super"
    assert get(client, zone, issue["id"], "a_super")["allowed_actions"] == []
    assert_problem(act(client, zone, "a_super", issue, "verify_pass"), 403, "forbidden")
    response = act(client, zone, "a_super", issue, "verify_fail", note="自己不满意")
    assert_problem(response, 403, "forbidden")
    closed = ok(act(client, zone, "d_super", issue, "verify_pass"))
    assert (closed["status"], closed["verified_by"]) == (S.CLOSED, "d_super")


# --- 5. Effects: after-photos, rework, timestamps, deadlines ---------------------------------


def test_submit_rectification_needs_an_after_photo_of_this_round(
    client: TestClient, zone: Zone
) -> None:
    issue = dispatched_issue(client, zone)
    response = act(client, zone, "a_worker", issue, "submit_rectification")
    assert_problem(response, 409, "after_photo_required")
    assert get(client, zone, issue["id"])["version"] == issue["version"]

    upload_after(client, zone, "a_worker", issue["id"])
    issue = ok(submit(client, zone, "a_worker", issue["id"]))
    assert issue["rework_count"] == 0
    failed = ok(act(client, zone, "d_super", issue, "verify_fail", note="还有残留"))
    assert (failed["status"], failed["rework_count"]) == (S.DISPATCHED, 1)
    assert failed["rectified_at"] is None

    # The first round's after-photo no longer counts.
    response = act(client, zone, "a_worker", failed, "submit_rectification")
    assert_problem(response, 409, "after_photo_required")
    upload_after(client, zone, "a_worker", issue["id"], seed=7)
    again = ok(submit(client, zone, "a_worker", issue["id"]))
    assert again["status"] == S.RECTIFIED
    failed = ok(act(client, zone, "d_super", again, "verify_fail", note="仍不合格"))
    assert failed["rework_count"] == 2


def test_timestamps_and_default_deadline(client: TestClient, zone: Zone) -> None:
    categories = ok(client.get("/api/v1/categories", headers=zone.headers("d_super")))
    hours = {c["code"]: c["deadline_hours"] for c in categories}["flyposter"]
    assert hours == 24
    issue = ok(report(client, zone), 201)
    assert [issue[k] for k in ("dispatched_at", "deadline", "rectified_at", "closed_at")] == [
        None
    ] * 4

    start = datetime.now(UTC)
    dispatched = ok(act(client, zone, "d_super", issue, "dispatch", org_unit="A"))
    end = datetime.now(UTC)
    dispatched_at, deadline = parse(dispatched["dispatched_at"]), parse(dispatched["deadline"])
    assert dispatched_at.tzinfo is not None and deadline.tzinfo is not None
    assert start <= dispatched_at <= end
    assert deadline - dispatched_at == timedelta(hours=hours)
    assert get(client, zone, issue["id"])["deadline"] is not None
    assert parse(get(client, zone, issue["id"])["deadline"]) == deadline

    upload_after(client, zone, "a_worker", issue["id"])
    start = datetime.now(UTC)
    rectified = ok(submit(client, zone, "a_worker", issue["id"]))
    assert start <= parse(rectified["rectified_at"]) <= datetime.now(UTC)
    assert rectified["rectified_by"] == "a_worker" and rectified["closed_at"] is None

    failed = ok(act(client, zone, "d_super", rectified, "verify_fail", note="返工"))
    assert parse(failed["deadline"]) == deadline  # rework does not buy more time
    assert failed["rectified_at"] is None

    upload_after(client, zone, "a_worker", issue["id"], seed=8)
    rectified = ok(submit(client, zone, "a_worker", issue["id"]))
    start = datetime.now(UTC)
    closed = ok(act(client, zone, "d_super", rectified, "verify_pass"))
    assert start <= parse(closed["closed_at"]) <= datetime.now(UTC)
    assert parse(closed["rectified_at"]) == parse(rectified["rectified_at"])

    reopened = ok(act(client, zone, "d_super", closed, "reopen", note="又贴上了"))
    assert reopened["status"] == S.DISPATCHED and reopened["closed_at"] is None
    assert parse(reopened["deadline"]) - parse(reopened["dispatched_at"]) == timedelta(hours=hours)


def test_dispatch_and_extend_deadline_keep_the_given_deadline(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = ok(report(client, zone), 201)
    wanted = future(hours=6).replace(microsecond=0)
    dispatched = ok(
        act(client, zone, "d_super", issue, "dispatch", org_unit="A", deadline=iso(wanted))
    )
    assert parse(dispatched["deadline"]) == wanted
    later = wanted + timedelta(days=2)
    extended = ok(
        act(
            client,
            zone,
            "d_super",
            dispatched,
            "extend_deadline",
            note="材料未到",
            deadline=iso(later),
        )
    )
    assert parse(extended["deadline"]) == later
    assert extended["status"] == S.DISPATCHED
    assert parse(get(client, zone, issue["id"])["deadline"]) == later
    # A wall time without an offset is the zone's local time (GRIDPROOF_TIMEZONE).
    local = (later + timedelta(days=1)).astimezone(settings.zone).replace(tzinfo=None)
    naive = ok(
        act(
            client,
            zone,
            "d_super",
            extended,
            "extend_deadline",
            note="按当地时间",
            deadline=local.isoformat(),
        )
    )
    assert parse(naive["deadline"]) == local.replace(tzinfo=settings.zone)


# --- 6. Bad input: 422, and nothing changes --------------------------------------------------


BAD_ON_REPORTED = {
    "unknown action": {"action": "teleport"},
    "action missing": {"note": "没有动作"},
    "reject without note": {"action": "reject"},
    "reject with empty note": {"action": "reject", "note": ""},
    "dispatch without org_unit": {"action": "dispatch"},
    "mark_duplicate without duplicate_of": {"action": "mark_duplicate"},
    "deadline in the past": {"action": "dispatch", "org_unit": "A", "deadline": "PAST"},
    "deadline unparseable": {"action": "dispatch", "org_unit": "A", "deadline": "tomorrow"},
    "org_unit unknown": {"action": "dispatch", "org_unit": "NOPE"},
    "duplicate of itself": {"action": "mark_duplicate", "duplicate_of": "SELF"},
    "duplicate of nothing": {"action": "mark_duplicate", "duplicate_of": 987654},
    "duplicate of an id beyond 64 bits": {"action": "mark_duplicate", "duplicate_of": 2**63},
    # Parseable, but later than any datetime once in UTC.
    "deadline past year 9999 in UTC": {
        "action": "dispatch",
        "org_unit": "A",
        "deadline": "9999-12-31T23:00:00-12:00",
    },
}


def _fill(body: dict[str, Any], issue: Issue) -> dict[str, Any]:
    placeholders = {"PAST": iso(future(hours=-1)), "SELF": issue["id"]}
    return {
        key: placeholders.get(value, value) if isinstance(value, str) else value
        for key, value in body.items()
    }


def _extend_request(case: str, current: datetime) -> dict[str, Any]:
    deadlines = {
        "earlier": current - timedelta(hours=1),
        "same": current,
        "past": future(hours=-1),
        "without-note": future(days=9),
    }
    request: dict[str, Any] = {"action": "extend_deadline", "note": "延期"}
    if case in deadlines:
        request["deadline"] = iso(deadlines[case])
    if case == "without-note":
        del request["note"]
    return request


def _refused_unchanged(
    client: TestClient, zone: Zone, issue: Issue, body: dict[str, Any]
) -> str | None:
    """POST the body as d_super; what went wrong unless 422 and nothing changed."""
    events = event_count(client, zone, issue["id"])
    lenient = TestClient(client.app, raise_server_exceptions=False)  # a 500 is a finding too
    response = lenient.post(
        f"/api/v1/issues/{issue['id']}/transitions",
        json=body,
        headers=zone.headers("d_super", **{"If-Match": f'"{issue["version"]}"'}),
    )
    after = get(client, zone, issue["id"])
    if not response.headers["content-type"].startswith(PROBLEM_JSON):
        return f"{body}: {response.status_code} {response.text}"
    if (response.status_code, response.json().get("code")) != (422, "validation_error"):
        return f"{body}: {response.status_code} {response.text}"
    if (after["status"], after["version"], after["deadline"]) != (
        issue["status"],
        issue["version"],
        issue["deadline"],
    ):
        return f"{body}: issue changed to {after['status']} v{after['version']}"
    if event_count(client, zone, issue["id"]) != events:
        return f"{body}: an event was appended"
    return None


def test_bad_transition_input_is_422_and_changes_nothing(client: TestClient, zone: Zone) -> None:
    reported = ok(report(client, zone), 201)
    wrong = [
        _refused_unchanged(client, zone, reported, _fill(body, reported))
        for body in BAD_ON_REPORTED.values()
    ]
    dispatched = dispatched_issue(client, zone)
    current = parse(dispatched["deadline"])
    for case in ("earlier", "same", "past", "without-note", "without-deadline"):
        wrong.append(_refused_unchanged(client, zone, dispatched, _extend_request(case, current)))
    assert [line for line in wrong if line] == []


def test_a_nul_character_in_a_note_is_not_a_server_error(client: TestClient, zone: Zone) -> None:
    """Stored as given or refused as invalid, but the same on every engine and never a 500."""
    lenient = TestClient(client.app, raise_server_exceptions=False)
    issue = ok(report(client, zone), 201)
    response = lenient.post(
        f"/api/v1/issues/{issue['id']}/transitions",
        json={"action": "reject", "note": "重复\x00上报"},
        headers=zone.headers("d_super", **{"If-Match": '"1"'}),
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert_problem(response, 422, "validation_error")


def test_an_issue_id_that_cannot_exist_is_not_a_server_error(
    client: TestClient, zone: Zone
) -> None:
    lenient = TestClient(client.app, raise_server_exceptions=False)
    url = f"/api/v1/issues/{2**63}"
    wrong = []
    for response in (
        lenient.get(url, headers=zone.headers("d_super")),
        lenient.post(
            f"{url}/transitions",
            json={"action": "accept"},
            headers=zone.headers("d_super", **{"If-Match": '"1"'}),
        ),
    ):
        problem = response.headers["content-type"].startswith(PROBLEM_JSON)
        if response.status_code not in (404, 422) or not problem:
            wrong.append(f"{response.request.method}: {response.status_code} {response.text}")
    assert wrong == []


# --- 7. Fixed on the spot (立行立改) ----------------------------------------------------------


def test_fixed_on_the_spot_starts_rectified_and_needs_another_verifier(
    client: TestClient, zone: Zone
) -> None:
    for seed, reporter in enumerate(("grid_worker", "a_super"), start=3):
        issue = ok(report(client, zone, reporter, after=[after_jpeg(seed=seed)]), 201)
        assert issue["photos"][1]["flags"] == []
        assert issue["status"] == S.RECTIFIED
        assert issue["org_unit"] == _USER_UNIT[reporter]
        assert issue["rectified_by"] == reporter and issue["rectified_at"] is not None
        assert [p["kind"] for p in issue["photos"]] == ["before", "after"]
        assert "verify_pass" not in issue["allowed_actions"]
        assert_problem(act(client, zone, reporter, issue, "verify_pass"), 403, "forbidden")
        assert get(client, zone, issue["id"])["version"] == issue["version"]
        closed = ok(act(client, zone, "d_super", issue, "verify_pass"))
        assert (closed["status"], closed["verified_by"]) == (S.CLOSED, "d_super")


# --- 8. Overdue ------------------------------------------------------------------------------


def test_overdue_is_derived_from_the_deadline(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    on_time = ok(report(client, zone), 201)
    on_time = ok(
        act(
            client,
            zone,
            "d_super",
            on_time,
            "dispatch",
            org_unit="A",
            deadline=iso(future(minutes=5)),
        )
    )
    assert on_time["overdue"] is False

    late = ok(report(client, zone), 201)
    past = datetime.now(UTC) - timedelta(days=2)
    with own_session(settings) as session:
        supervisor = session.get(User, zone.users["d_super"].id)
        assert supervisor is not None
        apply_transition(
            session,
            settings,
            supervisor,
            late["id"],
            TransitionRequest(action="dispatch", org_unit="A", deadline=past + timedelta(hours=1)),
            version=late["version"],
            now=past,
        )
    late = get(client, zone, late["id"])
    assert late["status"] == S.DISPATCHED and late["overdue"] is True
    assert get(client, zone, on_time["id"])["overdue"] is False

    def listed(**params: Any) -> set[int]:
        page = ok(client.get("/api/v1/issues", params=params, headers=zone.headers("d_super")))
        return {item["id"] for item in page["items"]}

    assert listed(overdue="true") == {late["id"]}
    assert late["id"] not in listed(overdue="false")
    assert on_time["id"] in listed(overdue="false")


# --- 9. Concurrency --------------------------------------------------------------------------


def test_concurrent_transitions_with_the_same_version_let_exactly_one_through(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = ok(report(client, zone), 201)
    count = 6
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def attempt(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = act(client, zone, "d_super", issue, "accept")
        except Exception as exc:  # recorded, so that the assertion below names it
            results[index] = exc

    threads = [threading.Thread(target=attempt, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(getattr(r, "status_code", repr(r)) for r in results)
    assert statuses == [200] + [412] * (count - 1), [getattr(r, "text", r) for r in results]
    for response in results:
        if response.status_code == 412:
            assert_problem(response, 412, "version_conflict")
    after = get(client, zone, issue["id"])
    assert (after["status"], after["version"]) == (S.ACCEPTED, 2)
    with own_session(settings) as session:
        actions = session.exec(
            select(IssueEvent.action, func.count())
            .where(IssueEvent.issue_id == issue["id"])
            .group_by(IssueEvent.action)
        ).all()
    assert dict(actions) == {"report": 1, "accept": 1}


def test_concurrent_service_calls_let_exactly_one_through(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    """The same race one layer down, each thread with its own session."""
    issue = dispatched_issue(client, zone)
    supervisor_id = zone.users["d_super"].id
    count = 6
    barrier = threading.Barrier(count)
    outcomes: list[str] = [""] * count

    def attempt(index: int) -> None:
        with own_session(settings) as session:
            supervisor = session.get(User, supervisor_id)
            assert supervisor is not None
            session.commit()  # end the read: on SQLite it holds the write lock
            request = TransitionRequest(
                action="extend_deadline", note=f"第{index}次", deadline=future(days=10 + index)
            )
            barrier.wait(timeout=30)
            try:
                apply_transition(
                    session, settings, supervisor, issue["id"], request, version=issue["version"]
                )
                outcomes[index] = "ok"
            except Exception as exc:
                outcomes[index] = getattr(exc, "code", repr(exc))

    threads = [threading.Thread(target=attempt, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["ok"] + ["version_conflict"] * (count - 1)
    after = get(client, zone, issue["id"])
    assert after["version"] == issue["version"] + 1
    assert event_count(client, zone, issue["id"]) == after["version"]


def test_dispatch_round_tells_which_after_photos_count(client: TestClient, zone: Zone) -> None:
    issue = rectified_issue(client, zone)
    assert issue["dispatch_round"] == 1
    [first_after] = [p for p in issue["photos"] if p["kind"] == "after"]
    assert first_after["dispatch_round"] == 1
    failed = ok(act(client, zone, "d_super", issue, "verify_fail", note="仍有残留"))
    assert failed["dispatch_round"] == 2  # the old after-photo is of round 1: a new one is needed
    response = submit(client, zone, "a_worker", issue["id"])
    assert response.status_code == 409 and response.json()["code"] == "after_photo_required"
    upload_after(client, zone, "a_worker", issue["id"])
    rounds = {
        p["dispatch_round"]
        for p in get(client, zone, issue["id"])["photos"]
        if p["kind"] == "after"
    }
    assert rounds == {1, 2}


# --- 10. Retried transitions (Idempotency-Key) -------------------------------------------------


def test_a_retried_transition_is_answered_once(client: TestClient, zone: Zone) -> None:
    """A phone whose answer was lost sends the same request again: the first answer, no second
    event; the same key for another request is a conflict; a bad key is refused."""
    issue = ok(report(client, zone), 201)
    url = f"/api/v1/issues/{issue['id']}/transitions"
    body = {"action": "dispatch", "org_unit": "A", "note": "请尽快处理"}
    headers = zone.headers("d_super", **{"If-Match": '"1"', "Idempotency-Key": "dispatch-7f1c"})
    first = client.post(url, json=body, headers=headers)
    again = client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["status"] == first.json()["status"] == S.DISPATCHED
    assert again.json()["version"] == first.json()["version"] == 2
    assert event_count(client, zone, issue["id"]) == 2  # report + one dispatch
    other = client.post(url, json={**body, "org_unit": "B"}, headers=headers)
    assert_problem(other, 409, "idempotency_conflict")
    too_long = zone.headers("d_super", **{"If-Match": '"2"', "Idempotency-Key": "k" * 201})
    refused = client.post(url, json={"action": "extend_deadline"}, headers=too_long)
    assert_problem(refused, 422, "validation_error")
    assert get(client, zone, issue["id"])["version"] == 2


def test_a_key_is_the_callers_own(client: TestClient, zone: Zone) -> None:
    """Another user's identical key is another request; without a key nothing is remembered."""
    first, second = ok(report(client, zone), 201), ok(report(client, zone), 201)
    key = {"Idempotency-Key": "accept-1"}
    mine = client.post(
        f"/api/v1/issues/{first['id']}/transitions",
        json={"action": "accept"},
        headers=zone.headers("d_super", **{"If-Match": '"1"', **key}),
    )
    theirs = client.post(
        f"/api/v1/issues/{second['id']}/transitions",
        json={"action": "accept"},
        headers=zone.headers("d_super2", **{"If-Match": '"1"', **key}),
    )
    assert (mine.status_code, theirs.status_code) == (200, 200)
    assert get(client, zone, second["id"])["status"] == S.ACCEPTED
    unkeyed = act(client, zone, "d_super", get(client, zone, first["id"]), "dispatch", org_unit="A")
    assert unkeyed.status_code == 200
    stale = act(client, zone, "d_super", first, "dispatch", org_unit="A")  # version 1 again
    assert_problem(stale, 412, "version_conflict")
