"""The loop's new branches (issue 14) on the service, on SQLite and PostgreSQL: 延期申请
(request / approve / refuse_extension), 不予受理 after 退回, the fields cleared by return and
reopen, and the rectified quantity. The table tests read TRANSITIONS rather than restating it.
"""

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
from app.errors import AppError, Forbidden, InvalidTransition
from app.models import Issue, IssueEvent, User
from app.models.issue import IssueStatus, TransitionRequest
from app.services.issues import TRANSITIONS, Action, apply_transition
from tests.factories import Zone, act, add_photos, dispatched_issue, report
from tests.routers.test_transitions import get, issue_in_status, ok
from tests.services.test_stats import Builder, at, district_stats, make_quick_zone

S = IssueStatus
NEW_BRANCHES = (
    Action.REQUEST_EXTENSION,
    Action.APPROVE_EXTENSION,
    Action.REFUSE_EXTENSION,
    Action.REJECT,
    Action.RETURN,
    Action.REOPEN,
)
# One user per role, each in scope of every issue of office A (auditor and viewer read only).
BY_ROLE = {
    "worker": "a_worker",
    "supervisor": "d_super",
    "auditor": "auditor",
    "viewer": "viewer",
    "admin": "admin",
}


@contextmanager
def own_session(settings: Settings) -> Iterator[Session]:
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        yield session


def future(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def body_for(action: Action, **extra: Any) -> TransitionRequest:
    fields: dict[str, Any] = {"note": "按表操作", "deadline": future(days=20)}
    wanted = set(TRANSITIONS[action].needs)
    return TransitionRequest(
        action=action, **{k: v for k, v in fields.items() if k in wanted}, **extra
    )


def apply(settings: Settings, username: str, issue_id: int, request: TransitionRequest) -> Issue:
    """apply_transition as `username` at the issue's current version, in a session of its own."""
    with own_session(settings) as session:
        user = session.get(User, _user_id(session, username))
        current = session.get(Issue, issue_id)
        assert user is not None and current is not None
        return apply_transition(session, settings, user, issue_id, request, version=current.version)


def _user_id(session: Session, username: str) -> int:
    found = session.exec(select(User.id).where(User.username == username)).first()
    assert found is not None
    return found


def stored(settings: Settings, issue_id: int) -> tuple[Issue, int]:
    """The issue as stored, and how many events it has."""
    with own_session(settings) as session:
        issue = session.get(Issue, issue_id)
        count = session.exec(
            select(func.count()).select_from(IssueEvent).where(IssueEvent.issue_id == issue_id)
        ).one()
        assert issue is not None
        return issue, count


def request_extension(client: TestClient, zone: Zone, issue: dict[str, Any]) -> dict[str, Any]:
    asked = {"deadline": future(days=40).isoformat(), "note": "雨季施工，需延期"}
    return ok(act(client, zone, "a_worker", issue, "request_extension", **asked))


def prepared(client: TestClient, zone: Zone, action: Action, status: IssueStatus, original: int):
    issue = issue_in_status(client, zone, status, original)
    if TRANSITIONS[action].extension_pending and status == S.DISPATCHED:
        issue = request_extension(client, zone, issue)
    return issue


@pytest.mark.parametrize("action", NEW_BRANCHES)
def test_each_new_branch_from_each_status_and_role_follows_the_table(
    client: TestClient, zone: Zone, settings: Settings, action: Action
) -> None:
    """Allowed: the target, one more event. Wrong status: 409; wrong role: 403; nothing written."""
    rule = TRANSITIONS[action]
    original = ok(report(client, zone), 201)["id"]
    issues = {status: prepared(client, zone, action, status, original) for status in S}
    wrong = []
    for role, username in BY_ROLE.items():
        for status in S:
            issue = issues[status]
            before, events = stored(settings, issue["id"])
            expected: type[AppError] | None = None
            if status not in rule.sources:
                expected = InvalidTransition
            elif role not in rule.roles:
                expected = Forbidden
            try:
                after = apply(settings, username, issue["id"], body_for(action))
            except AppError as error:
                if expected is None or not isinstance(error, expected):
                    wrong.append(f"{username} from {status}: {type(error).__name__} {error}")
                now, count = stored(settings, issue["id"])
                if (now.version, now.status, count) != (before.version, before.status, events):
                    wrong.append(f"{username} from {status}: refused but written")
                continue
            if expected is not None:
                wrong.append(f"{username} from {status}: allowed, expected {expected.__name__}")
            elif (after.status, stored(settings, issue["id"])[1]) != (rule.target, events + 1):
                wrong.append(f"{username} from {status}: {after.status}")
            issues[status] = prepared(client, zone, action, status, original)  # moved on
    assert wrong == []


def test_extension_request_then_approve_moves_the_deadline(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = dispatched_issue(client, zone)
    old_deadline = issue["deadline"]
    asked = future(days=40).replace(microsecond=0)
    pending = ok(
        act(
            client,
            zone,
            "a_worker",
            issue,
            "request_extension",
            deadline=asked.isoformat(),
            note="雨季施工，需延期",
        )
    )
    assert pending["status"] == S.DISPATCHED and pending["deadline"] == old_deadline
    request = pending["extension_request"]
    assert datetime.fromisoformat(request["deadline"]) == asked
    assert (request["note"], request["requested_by"]) == ("雨季施工，需延期", "a_worker")
    assert request["requested_at"] is not None
    # Who asked sees no way to ask again or decide; a supervisor sees the decision.
    assert get(client, zone, issue["id"], "a_worker")["allowed_actions"] == [
        "return",
        "submit_rectification",
    ]
    assert get(client, zone, issue["id"], "d_super")["allowed_actions"] == [
        "return",
        "extend_deadline",
        "approve_extension",
        "refuse_extension",
        "submit_rectification",
    ]
    queue = client.get(
        "/api/v1/issues?extension_pending=true", headers=zone.headers("d_super")
    ).json()
    assert [i["id"] for i in queue["items"]] == [issue["id"]]
    again = act(
        client,
        zone,
        "a_worker",
        pending,
        "request_extension",
        deadline=future(days=50).isoformat(),
        note="再延",
    )
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")

    approved = ok(act(client, zone, "d_super", pending, "approve_extension"))
    assert datetime.fromisoformat(approved["deadline"]) == asked
    assert approved["extension_request"] is None
    assert "approve_extension" not in approved["allowed_actions"]
    events = client.get(f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("d_super"))
    asked_event, approve_event = events.json()[-2:]
    assert (asked_event["action"], asked_event["note"]) == ("request_extension", "雨季施工，需延期")
    assert approve_event["action"] == "approve_extension"
    assert approve_event["data"]["requested_by"] == "a_worker"
    assert approve_event["data"]["previous_deadline"] is not None
    none_pending = client.get(
        "/api/v1/issues?extension_pending=true", headers=zone.headers("d_super")
    ).json()
    assert none_pending["items"] == []


def test_extension_refused_keeps_the_deadline_and_needs_a_note(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = request_extension(client, zone, dispatched_issue(client, zone))
    no_note = act(client, zone, "d_super", issue, "refuse_extension")
    assert (no_note.status_code, no_note.json()["code"]) == (422, "validation_error")
    assert stored(settings, issue["id"])[0].version == issue["version"]
    refused = ok(act(client, zone, "d_super", issue, "refuse_extension", note="工期充足"))
    assert refused["deadline"] == issue["deadline"]
    assert refused["extension_request"] is None
    # Decided: nothing is pending any more.
    late = act(client, zone, "d_super", refused, "approve_extension")
    assert (late.status_code, late.json()["code"]) == (409, "invalid_transition")


def test_who_asked_for_an_extension_does_not_decide_it(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = dispatched_issue(client, zone)
    asked = {"deadline": future(days=40).isoformat(), "note": "需延期"}
    pending = ok(act(client, zone, "a_super", issue, "request_extension", **asked))
    own = act(client, zone, "a_super", pending, "approve_extension")
    assert (own.status_code, own.json()["code"]) == (403, "forbidden")
    assert "approve_extension" not in get(client, zone, issue["id"], "a_super")["allowed_actions"]
    ok(act(client, zone, "d_super", pending, "approve_extension"))


@pytest.mark.parametrize(
    "case",
    ["no deadline", "no note", "past deadline", "earlier than now's deadline", "naive garbage"],
)
def test_bad_extension_requests_are_422_and_write_nothing(
    client: TestClient, zone: Zone, settings: Settings, case: str
) -> None:
    issue = dispatched_issue(client, zone)
    current = datetime.fromisoformat(issue["deadline"])
    body: dict[str, Any] = {"deadline": future(days=40).isoformat(), "note": "需延期"}
    if case == "no deadline":
        del body["deadline"]
    elif case == "no note":
        del body["note"]
    elif case == "past deadline":
        body["deadline"] = future(days=-1).isoformat()
    elif case == "earlier than now's deadline":
        body["deadline"] = (current - timedelta(hours=1)).isoformat()
    else:
        body["deadline"] = "next tuesday"
    before, events = stored(settings, issue["id"])
    response = act(client, zone, "a_worker", issue, "request_extension", **body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "validation_error"
    after, count = stored(settings, issue["id"])
    assert (after.version, after.extension_deadline_at, count) == (before.version, None, events)


def test_a_pending_request_ends_when_the_issue_leaves_dispatched(
    client: TestClient, zone: Zone
) -> None:
    issue = request_extension(client, zone, dispatched_issue(client, zone))
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    issue = get(client, zone, issue["id"], "a_worker")
    rectified = ok(act(client, zone, "a_worker", issue, "submit_rectification"))
    assert rectified["extension_request"] is None


def test_returned_issue_forgets_its_round_and_can_be_refused(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = dispatched_issue(client, zone)
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    issue = ok(
        act(client, zone, "a_worker", get(client, zone, issue["id"]), "submit_rectification")
    )
    failed = ok(act(client, zone, "d_super", issue, "verify_fail", note="未清理干净"))
    assert failed["verified_by"] == "d_super" and failed["deadline"] is not None
    returned = ok(act(client, zone, "a_worker", failed, "return", note="不属于我办职责"))
    assert returned["status"] == S.ACCEPTED
    assert (returned["deadline"], returned["verified_by"], returned["rectified_by"]) == (
        None,
        None,
        None,
    )
    assert returned["dispatched_at"] is None and returned["overdue"] is False
    assert returned["allowed_actions"] == []  # the office is done with it
    queue = get(client, zone, issue["id"], "d_super")["allowed_actions"]
    assert queue == ["reject", "mark_duplicate", "dispatch"]
    # The trail keeps what the issue forgot.
    events = client.get(f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("d_super"))
    trail = events.json()
    assert trail[-1]["action"] == "return"
    assert set(trail[-1]["data"]["cleared"]) >= {"deadline", "verified_by", "rectified_by"}
    assert any(e["action"] == "dispatch" and e["data"]["deadline"] for e in trail)
    no_note = act(client, zone, "d_super", returned, "reject")
    assert (no_note.status_code, no_note.json()["code"]) == (422, "validation_error")
    refused = ok(act(client, zone, "d_super", returned, "reject", note="不予受理：非城管事项"))
    assert refused["status"] == S.REJECTED


def test_reopen_clears_the_old_verdict(client: TestClient, zone: Zone) -> None:
    closed = issue_in_status(client, zone, S.CLOSED)
    assert closed["verified_by"] == "d_super" and closed["closed_at"] is not None
    reopened = ok(act(client, zone, "d_super", closed, "reopen", note="复发"))
    assert (reopened["verified_by"], reopened["closed_at"], reopened["rectified_by"]) == (
        None,
        None,
        None,
    )
    assert reopened["deadline"] is not None and reopened["status"] == S.DISPATCHED


def test_rectified_quantity_is_stored_and_bad_ones_are_refused(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    issue = dispatched_issue(client, zone)
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    issue = get(client, zone, issue["id"], "a_worker")
    for bad in (-1, "abc", "NaN", "Infinity", 1e12):
        response = act(client, zone, "a_worker", issue, "submit_rectification", quantity=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["code"] == "validation_error"
        assert stored(settings, issue["id"])[0].status == S.DISPATCHED
    elsewhere = act(client, zone, "a_worker", issue, "return", note="x", quantity=3)
    assert elsewhere.status_code == 422
    done = ok(act(client, zone, "a_worker", issue, "submit_rectification", quantity=12000))
    assert done["rectified_quantity"] == 12000
    last = client.get(f"/api/v1/issues/{issue['id']}/events", headers=zone.headers("d_super"))
    assert last.json()[-1]["data"]["quantity"] == 12000


def test_the_new_refusals_speak_chinese_unless_english_is_asked_for(
    client: TestClient, zone: Zone
) -> None:
    issue = dispatched_issue(client, zone)
    url = f"/api/v1/issues/{issue['id']}/transitions"
    cases = [
        ("d_super", {"action": "approve_extension"}, 409, "没有待审批的延期申请"),
        ("viewer", {"action": "approve_extension"}, 403, "viewer 角色不能执行 approve_extension"),
        ("a_worker", {"action": "request_extension", "note": "x"}, 422, "request_extension 需要"),
        (
            "a_worker",
            {"action": "request_extension", "note": "x", "deadline": "2020-01-01T00:00:00Z"},
            422,
            "期限须晚于当前时间",
        ),
    ]
    for username, body, status, chinese in cases:
        match = {"If-Match": f'"{issue["version"]}"'}
        zh = client.post(url, json=body, headers=zone.headers(username, **match))
        en = client.post(
            url, json=body, headers=zone.headers(username, **match, **{"Accept-Language": "en"})
        )
        assert (zh.status_code, en.status_code) == (status, status), (body, zh.text)
        assert zh.json()["code"] == en.json()["code"]
        assert chinese in zh.json()["detail"], zh.text
        assert zh.json()["detail"] != en.json()["detail"]
        assert en.json()["detail"].isascii(), en.text


def test_an_approved_extension_counts_in_the_indicators_as_extend_deadline_does(
    session: Session, settings: Settings
) -> None:
    """Three issues due Wed 18:00, fixed and closed Thursday: one given more time by an approved
    request, one by a supervisor's extend_deadline, one whose request was refused."""
    zone = make_quick_zone(session)
    b = Builder(session, settings, zone)
    approved, extended, refused = (b.report("03-03 09:00") for _ in range(3))
    for i in (approved, extended, refused):
        b.dispatch(i, "03-03 10:00", "03-05 18:00")
    later = at("03-07 18:00")
    for i in (approved, refused):
        b.act(i, "a_worker", "request_extension", "03-04 09:00", deadline=later, note="需延期")
    b.act(approved, "d_super", "approve_extension", "03-04 10:00")
    b.act(extended, "d_super", "extend_deadline", "03-04 10:00", deadline=later, note="延期")
    b.act(refused, "d_super", "refuse_extension", "03-04 10:00", note="工期充足")
    for i in (approved, extended, refused):
        b.rectify(i, "03-06 09:00")
        b.verify(i, "03-06 15:00")
    got = district_stats(session, settings, zone).indicators
    assert (got.due, got.closed, got.closed_on_time) == (3, 3, 2)
    assert (got.dispatched, got.rectified_on_time) == (3, 2)
    deadlines = [session.get(Issue, i).deadline_at for i in (approved, extended)]  # type: ignore[union-attr]
    assert deadlines == [later, later]
