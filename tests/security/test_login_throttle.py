"""Sign-ins are throttled per username and per client address, in the database (issue 17,
item 2): wrong passwords get 429 with Retry-After from some point on, others still sign in."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.config import Settings
from app.db import get_engine
from app.errors import TooManyRequests
from app.main import create_app
from app.models import LoginThrottle
from app.models.base import utcnow
from app.services import auth, login_throttle, orgs
from tests.factories import assert_problem

PASSWORD = "correct horse battery"


@pytest.fixture
def people(session: Session) -> None:
    orgs.add_org(session, "D", "经开区", "district", None)
    for name in ("alice", "bob", "carol"):
        auth.create_user(session, name, "worker", "D", PASSWORD)


def login(client: TestClient, username: str, password: str) -> Any:
    body = {"username": username, "password": password}
    return client.post("/api/v1/auth/login", json=body)


def test_thirty_wrong_passwords_get_429_while_another_user_signs_in(
    client: TestClient, people: None
) -> None:
    answers = [login(client, "alice", f"guess {i}") for i in range(30)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429}, statuses
    first = statuses.index(429)
    assert first <= 10, statuses
    assert statuses[-10:] == [429] * 10, statuses
    for answer in answers[first:]:
        if answer.status_code == 429:
            body = assert_problem(answer, 429, "too_many_requests")
            assert int(answer.headers["Retry-After"]) == body["retry_after_s"] >= 1
    # From the same address, another user still signs in; alice's own password waits.
    assert login(client, "bob", PASSWORD).status_code == 200
    assert_problem(login(client, "alice", PASSWORD), 429, "too_many_requests")


def test_the_block_is_in_the_database_for_every_replica(
    client: TestClient, people: None, settings: Settings
) -> None:
    for i in range(settings.login_user_failures):
        assert login(client, "alice", f"guess {i}").status_code == 401
    # Another app on the same database (another replica) refuses too.
    with TestClient(create_app(settings)) as replica:
        assert_problem(login(replica, "alice", PASSWORD), 429, "too_many_requests")
    with Session(get_engine(settings.database_url)) as session:
        row = session.get(LoginThrottle, "user:alice")
        assert row is not None and row.failures == settings.login_user_failures
        assert row.blocked_until is not None and row.blocked_until > utcnow()


def test_backoff_doubles_and_a_success_after_the_wait_clears_the_username(
    client: TestClient, people: None, settings: Settings
) -> None:
    limit = settings.login_user_failures
    for i in range(limit):
        login(client, "carol", f"guess {i}")
    with Session(get_engine(settings.database_url)) as session:
        row = session.get(LoginThrottle, "user:carol")
        assert row is not None and row.blocked_until is not None
        first_wait = row.blocked_until - row.last_failure_at
        # The wait is over (as if time passed): one more wrong guess waits twice as long.
        row.blocked_until = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert login(client, "carol", "one more guess").status_code == 401
    with Session(get_engine(settings.database_url)) as session:
        row = session.get(LoginThrottle, "user:carol")
        assert row is not None and row.blocked_until is not None
        assert row.blocked_until - row.last_failure_at == 2 * first_wait
        row.blocked_until = None
        session.add(row)
        session.commit()
    assert login(client, "carol", PASSWORD).status_code == 200
    with Session(get_engine(settings.database_url)) as session:
        assert session.get(LoginThrottle, "user:carol") is None
        assert session.get(LoginThrottle, "ip:testclient") is not None  # the address's stays


def test_one_address_guessing_many_usernames_is_throttled(
    database_url: str, tmp_path: Any, people: None
) -> None:
    settings = Settings(
        database_url=database_url, upload_dir=tmp_path / "uploads", login_ip_failures=8
    )
    with TestClient(create_app(settings)) as client:
        statuses = [login(client, f"user{i}", "guess").status_code for i in range(12)]
        assert statuses[:8] == [401] * 8 and statuses[-3:] == [429] * 3, statuses
        assert_problem(login(client, "bob", PASSWORD), 429, "too_many_requests")
    with Session(get_engine(database_url)) as session:
        keys = set(session.exec(select(LoginThrottle.key)).all())
        assert "ip:testclient" in keys


def test_old_failures_are_forgotten(client: TestClient, people: None, settings: Settings) -> None:
    for i in range(settings.login_user_failures - 1):
        login(client, "alice", f"guess {i}")
    with Session(get_engine(settings.database_url)) as session:
        row = session.get(LoginThrottle, "user:alice")
        assert row is not None
        row.last_failure_at = utcnow() - timedelta(seconds=settings.login_window_s + 1)
        session.add(row)
        session.commit()
    assert login(client, "alice", "again").status_code == 401
    with Session(get_engine(settings.database_url)) as session:
        row = session.get(LoginThrottle, "user:alice")
        assert row is not None and row.failures == 1 and row.blocked_until is None


def test_the_hashing_slots_are_capped(settings: Settings) -> None:
    capped = settings.model_copy(update={"login_max_concurrent_hashes": 1})
    held = login_throttle.hashing_slot(capped)
    held.__enter__()
    with pytest.raises(TooManyRequests) as refused, login_throttle.hashing_slot(capped):
        pass
    held.__exit__(None, None, None)
    assert refused.value.headers["Retry-After"] == "1"
    with login_throttle.hashing_slot(capped):
        pass  # released again
