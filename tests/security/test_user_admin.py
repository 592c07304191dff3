"""Admins disable and enable users and revoke all of a user's tokens at once (issue 17,
item 3); expired and disabled users' tokens get 401 (tests/security/test_token_expiry.py)."""

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.models import ApiToken, User
from app.services import auth
from tests.factories import PASSWORD, Zone, assert_problem


def _me(client: TestClient, token: str) -> Any:
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def _login(client: TestClient, username: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})


def test_an_admin_revokes_every_token_of_a_user_at_once(client: TestClient, zone: Zone) -> None:
    second = _login(client, "a_worker").json()["token"]
    tokens = [zone.tokens["a_worker"], second]
    assert all(_me(client, t).status_code == 200 for t in tokens)
    answer = client.delete("/api/v1/users/a_worker/tokens", headers=zone.headers("admin"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "username": "a_worker",
        "role": "worker",
        "org_unit": "A",
        "disabled_at": None,
        "tokens_revoked": 2,
    }
    for token in tokens:
        assert_problem(_me(client, token), 401, "unauthenticated")
    assert _me(client, zone.tokens["a_worker2"]).status_code == 200  # others untouched
    assert _login(client, "a_worker").status_code == 200  # and they may sign in again


def test_disable_then_enable(client: TestClient, zone: Zone, session: Session) -> None:
    admin = zone.headers("admin")
    disabled = client.post("/api/v1/users/b_worker/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled_at"] and disabled.json()["tokens_revoked"] == 1
    assert_problem(_me(client, zone.tokens["b_worker"]), 401, "unauthenticated")
    assert_problem(_login(client, "b_worker"), 401, "unauthenticated")
    enabled = client.post("/api/v1/users/b_worker/enable", headers=admin)
    assert enabled.status_code == 200 and enabled.json()["disabled_at"] is None
    # The old token stays revoked; a new sign-in works.
    assert_problem(_me(client, zone.tokens["b_worker"]), 401, "unauthenticated")
    token = _login(client, "b_worker").json()["token"]
    assert _me(client, token).status_code == 200
    user = session.exec(select(User).where(User.username == "b_worker")).one()
    live = session.exec(
        select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
    ).all()
    assert len(live) == 1


def test_only_admins_and_only_within_their_unit(
    client: TestClient, zone: Zone, session: Session
) -> None:
    for path in ("/api/v1/users/a_worker/disable", "/api/v1/users/a_worker/enable"):
        assert_problem(client.post(path, headers=zone.headers("d_super")), 403, "forbidden")
    refused = client.delete("/api/v1/users/a_worker/tokens", headers=zone.headers("auditor"))
    assert_problem(refused, 403, "forbidden")
    assert_problem(
        client.post("/api/v1/users/nobody/disable", headers=zone.headers("admin")), 404, "not_found"
    )
    _user, b_admin = auth.create_user(session, "b_admin", "admin", "B", PASSWORD)
    bearer = {"Authorization": f"Bearer {b_admin}"}
    outside = client.post("/api/v1/users/a_worker/disable", headers=bearer)
    assert_problem(outside, 404, "not_found")
    assert _me(client, zone.tokens["a_worker"]).status_code == 200  # nothing happened
    assert client.post("/api/v1/users/b_worker/disable", headers=bearer).status_code == 200
    # An admin cannot lock themselves out.
    assert_problem(
        client.post("/api/v1/users/b_admin/disable", headers=bearer), 422, "validation_error"
    )
    assert _me(client, b_admin).status_code == 200
