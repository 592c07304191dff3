"""Four eyes: who took this round's after-photos, or submitted the rectification, may not
check it; the transition and allowed_actions agree (issue 17, item 7)."""

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Zone, act, add_photos, assert_problem, dispatched_issue

VERIFY = {"verify_pass", "verify_fail"}


def _get(client: TestClient, zone: Zone, issue_id: int, username: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/issues/{issue_id}", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _listed(client: TestClient, zone: Zone, issue_id: int, username: str) -> dict[str, Any]:
    response = client.get("/api/v1/issues", headers=zone.headers(username))
    assert response.status_code == 200, response.text
    return next(i for i in response.json()["items"] if i["id"] == issue_id)


def _rectified_with_after_photo_by(client: TestClient, zone: Zone, uploader: str) -> dict[str, Any]:
    """Dispatched to A; `uploader` adds the after-photo, a_worker submits."""
    issue = dispatched_issue(client, zone)
    assert add_photos(client, zone, uploader, issue["id"], "after").status_code == 201
    issue = _get(client, zone, issue["id"], "a_worker")
    response = act(client, zone, "a_worker", issue, "submit_rectification")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_supervisor_who_took_the_after_photo_may_not_verify(
    client: TestClient, zone: Zone
) -> None:
    issue = _rectified_with_after_photo_by(client, zone, "a_super")
    assert issue["rectified_by"] == "a_worker"
    assert not VERIFY & set(_get(client, zone, issue["id"], "a_super")["allowed_actions"])
    assert not VERIFY & set(_listed(client, zone, issue["id"], "a_super")["allowed_actions"])
    assert_problem(act(client, zone, "a_super", issue, "verify_pass"), 403, "forbidden")
    response = act(client, zone, "a_super", issue, "verify_fail", note="不行")
    assert_problem(response, 403, "forbidden")
    assert _get(client, zone, issue["id"], "a_super")["version"] == issue["version"]
    # Someone else may, and both views offer it to them.
    assert set(_get(client, zone, issue["id"], "d_super")["allowed_actions"]) >= VERIFY
    assert set(_listed(client, zone, issue["id"], "d_super")["allowed_actions"]) >= VERIFY
    closed = act(client, zone, "d_super", issue, "verify_pass")
    assert closed.status_code == 200, closed.text
    assert closed.json()["verified_by"] == "d_super"


def test_an_after_photo_of_an_earlier_round_does_not_bar_the_check(
    client: TestClient, zone: Zone
) -> None:
    issue = _rectified_with_after_photo_by(client, zone, "a_super")
    failed = act(client, zone, "d_super", issue, "verify_fail", note="返工")
    assert failed.status_code == 200, failed.text
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    issue = _get(client, zone, issue["id"], "a_worker")
    rectified = act(client, zone, "a_worker", issue, "submit_rectification").json()
    assert set(_get(client, zone, issue["id"], "a_super")["allowed_actions"]) >= VERIFY
    closed = act(client, zone, "a_super", rectified, "verify_pass")
    assert closed.status_code == 200, closed.text
