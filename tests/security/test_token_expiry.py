"""Tokens expire when idle and when old; a disabled user's tokens are revoked (issue 17,
item 3). Expired, revoked and disabled tokens get 401, on the route and on a revalidation."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from app import cli
from app.config import Settings, get_settings
from app.db import get_engine
from app.models import ApiToken
from app.models.base import utcnow
from app.models.user import token_digest
from app.services import auth
from tests.factories import PASSWORD, Zone, assert_problem

ME = "/api/v1/auth/me"


def _me(client: TestClient, token: str, **headers: str) -> Any:
    return client.get(ME, headers={"Authorization": f"Bearer {token}", **headers})


def _age(settings: Settings, token: str, **fields: Any) -> None:
    """Move the token's timestamps into the past (as if time had passed)."""
    with Session(get_engine(settings.database_url)) as session:
        statement = update(ApiToken).where(col(ApiToken.token_sha256) == token_digest(token))
        session.execute(statement.values(**fields))
        session.commit()


def _last_used(settings: Settings, token: str) -> Any:
    auth.wait_for_touches()
    with Session(get_engine(settings.database_url)) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.token_sha256 == token_digest(token))
        ).one()
        return row.last_used_at


def test_an_idle_token_expires_and_a_used_one_does_not(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    token = zone.tokens["a_worker"]
    assert _last_used(settings, token) is not None  # issuing counts as a use
    _age(settings, token, last_used_at=utcnow() - timedelta(hours=2))
    assert _me(client, token).status_code == 200
    assert _last_used(settings, token) > utcnow() - timedelta(minutes=1)  # a GET noted its use
    idle = timedelta(days=settings.token_idle_days)
    _age(settings, token, created_at=utcnow() - idle * 2, last_used_at=utcnow() - idle / 2)
    assert _me(client, token).status_code == 200  # used within the idle time: still good
    assert _last_used(settings, token) > utcnow() - timedelta(minutes=1)  # and noted again
    _age(settings, token, last_used_at=utcnow() - idle - timedelta(minutes=1))
    body = assert_problem(_me(client, token), 401, "unauthenticated")
    assert "expired" in body["detail"]
    # A token without a noted use (issued before 0008) goes idle from its issue time.
    other = zone.tokens["b_worker"]
    _age(settings, other, created_at=utcnow() - idle - timedelta(minutes=1), last_used_at=None)
    assert_problem(_me(client, other), 401, "unauthenticated")


def test_a_token_expires_at_its_maximum_age_however_busy(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    token = zone.tokens["d_super"]
    oldest = timedelta(days=settings.token_max_days)
    _age(
        settings, token, created_at=utcnow() - oldest - timedelta(minutes=1), last_used_at=utcnow()
    )
    assert_problem(_me(client, token), 401, "unauthenticated")
    # A write route refuses it too.
    response = client.post(
        "/api/v1/issues", headers={"Authorization": f"Bearer {token}"}, data={"category": "x"}
    )
    assert_problem(response, 401, "unauthenticated")


def test_an_expired_token_gets_no_304_from_revalidation(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    token = zone.tokens["auditor"]
    first = client.get("/api/v1/issues", headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200 and first.headers.get("ETag")
    etag = first.headers["ETag"]
    again = client.get(
        "/api/v1/issues", headers={"Authorization": f"Bearer {token}", "If-None-Match": etag}
    )
    assert again.status_code == 304
    _age(settings, token, created_at=utcnow() - timedelta(days=settings.token_max_days + 1))
    expired = client.get(
        "/api/v1/issues", headers={"Authorization": f"Bearer {token}", "If-None-Match": etag}
    )
    assert_problem(expired, 401, "unauthenticated")


def test_a_write_request_notes_the_use_too(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    token = zone.tokens["a_worker"]
    _age(settings, token, last_used_at=utcnow() - timedelta(hours=2))
    response = client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 204), response.text
    assert _last_used(settings, token) > utcnow() - timedelta(minutes=1)
    assert_problem(_me(client, token), 401, "unauthenticated")


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(Path(settings.upload_dir)))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_user_disable_revokes_every_token_and_stops_sign_in(
    client: TestClient, zone: Zone, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    login = {"username": "a_worker", "password": PASSWORD}
    second = client.post("/api/v1/auth/login", json=login).json()["token"]
    first = zone.tokens["a_worker"]
    assert _me(client, first).status_code == _me(client, second).status_code == 200
    capsys.readouterr()
    assert cli.main(["user", "disable", "a_worker"]) == 0
    assert "2 token(s) revoked" in capsys.readouterr().out
    for token in (first, second):
        assert_problem(_me(client, token), 401, "unauthenticated")
    assert_problem(client.post("/api/v1/auth/login", json=login), 401, "unauthenticated")
    # Others are untouched.
    assert _me(client, zone.tokens["a_worker2"]).status_code == 200
    # Disabling twice is harmless; an unknown user is refused.
    assert cli.main(["user", "disable", "a_worker"]) == 0
    assert cli.main(["user", "disable", "nobody"]) != 0
