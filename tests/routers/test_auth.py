"""Sign-in, the current user, sign-out, and how tokens and passwords are stored."""

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from app.db import get_engine
from app.models import ApiToken, User
from app.services import auth, orgs
from tests.factories import assert_problem

PASSWORD = "correct horse battery"
JSON = {"content-type": "application/json"}


@pytest.fixture
def people(session: Session) -> dict[str, str]:
    """Org D with a worker who has a password and one who has only a token; their tokens."""
    orgs.add_org(session, "D", "经开区", "district", None)
    orgs.add_org(session, "A", "祥云办事处", "office", "D")
    _alice, alice_token = auth.create_user(session, "alice", "worker", "A", PASSWORD)
    _bot, bot_token = auth.create_user(session, "bot", "viewer", "D")
    return {"alice": alice_token, "bot": bot_token}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_login_returns_a_working_token_and_the_user(client, people):
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "user"}
    assert isinstance(body["token"], str) and len(body["token"]) >= 32
    user = body["user"]
    assert set(user) >= {"id", "username", "display_name", "role", "org_unit"}
    assert (user["username"], user["role"], user["org_unit"]) == ("alice", "worker", "A")
    me = client.get("/api/v1/auth/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.json() == user
    # Each sign-in is a new token; the earlier ones keep working.
    second = login(client, "alice", PASSWORD).json()["token"]
    assert second != body["token"]
    assert client.get("/api/v1/auth/me", headers=bearer(body["token"])).status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(second)).status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(client, people):
    wrong = assert_problem(login(client, "alice", "wrong password"), 401, "unauthenticated")
    unknown = assert_problem(login(client, "mallory", PASSWORD), 401, "unauthenticated")
    no_password = assert_problem(login(client, "bot", PASSWORD), 401, "unauthenticated")
    assert wrong["detail"] == unknown["detail"] == no_password["detail"]
    assert wrong["title"] == unknown["title"] == no_password["title"]
    assert "token" not in wrong


@pytest.mark.parametrize(
    "body",
    [
        {"content": b'{"username": "alice", "password":', "headers": JSON},
        {"content": b"", "headers": JSON},
        {"json": {}},
        {"json": {"username": "alice"}},
        {"json": {"password": PASSWORD}},
        {"json": {"username": "", "password": ""}},
        {"json": {"username": 7, "password": PASSWORD}},
        {"json": ["alice", PASSWORD]},
        {"data": {"username": "alice", "password": PASSWORD}},
    ],
)
def test_malformed_login_is_a_validation_error(client, body):
    response = client.post("/api/v1/auth/login", **body)
    problem = assert_problem(response, 422, "validation_error")
    assert problem.get("errors")


def test_me_describes_the_tokens_user(client, people):
    response = client.get("/api/v1/auth/me", headers=bearer(people["bot"]))
    assert response.status_code == 200
    body = response.json()
    assert (body["username"], body["role"], body["org_unit"]) == ("bot", "viewer", "D")
    assert isinstance(body["id"], int)
    assert "password_hash" not in body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWxpY2U6cGFzcw=="},
        {"Authorization": "not-even-a-scheme"},
    ],
)
def test_me_without_a_valid_token_is_unauthenticated(client, headers):
    assert_problem(client.get("/api/v1/auth/me", headers=headers), 401, "unauthenticated")


def test_logout_revokes_only_that_token(client, people):
    token = login(client, "alice", PASSWORD).json()["token"]
    response = client.post("/api/v1/auth/logout", headers=bearer(token))
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get("/api/v1/auth/me", headers=bearer(token)), 401, "unauthenticated")
    assert_problem(client.get("/api/v1/issues", headers=bearer(token)), 401, "unauthenticated")
    assert_problem(
        client.post("/api/v1/auth/logout", headers=bearer(token)), 401, "unauthenticated"
    )
    # The user's other token (from `user add`) is untouched, and a new sign-in works.
    assert client.get("/api/v1/auth/me", headers=bearer(people["alice"])).status_code == 200
    fresh = login(client, "alice", PASSWORD).json()["token"]
    assert client.get("/api/v1/auth/me", headers=bearer(fresh)).status_code == 200


def test_logout_needs_a_token(client):
    assert_problem(client.post("/api/v1/auth/logout"), 401, "unauthenticated")


def test_tokens_are_stored_only_as_sha256_hashes(client, people, settings):
    signed_in = login(client, "alice", PASSWORD).json()["token"]
    tokens = [signed_in, people["alice"], people["bot"]]
    with Session(get_engine(settings.database_url)) as db:
        rows = list(db.exec(select(ApiToken)))
        raw_rows = [tuple(row) for row in db.execute(text("SELECT * FROM api_tokens"))]
    assert len(rows) == 3
    assert {row.token_sha256 for row in rows} == {
        hashlib.sha256(token.encode()).hexdigest() for token in tokens
    }
    dump = repr(raw_rows)
    for token in tokens:
        assert token not in dump


def test_passwords_are_stored_as_argon2_hashes(client, people, settings):
    with Session(get_engine(settings.database_url)) as db:
        alice = db.exec(select(User).where(User.username == "alice")).one()
        bot = db.exec(select(User).where(User.username == "bot")).one()
        raw_rows = [tuple(row) for row in db.execute(text("SELECT * FROM users"))]
    assert alice.password_hash is not None
    assert alice.password_hash.startswith("$argon2")
    assert PASSWORD not in repr(raw_rows)
    assert bot.password_hash is None
