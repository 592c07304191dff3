"""The gate (app/gate.py, issue 17 items 1 and 2): the token is checked before the body is
read, JSON bodies are capped while they stream, uploads are counted per token, and the route
and the conditional GETs reuse the gate's one token lookup."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session, select

from app.config import Settings
from app.db import get_engine, get_read_engine
from app.errors import TooManyRequests
from app.main import create_app
from app.models import Issue, LoginThrottle
from app.models.base import utcnow
from app.services import upload_throttle
from tests.factories import Zone, assert_problem, files, jpeg, report

MB = 1024 * 1024


def _transition(client: TestClient, body: Any, **headers: str) -> Any:
    return client.post(
        "/api/v1/issues/1/transitions",
        content=body,
        headers={"Content-Type": "application/json", "If-Match": '"1"', **headers},
    )


def _tmp_files(settings: Settings) -> list[Path]:
    tmp = Path(settings.upload_dir) / "tmp"
    return sorted(p for p in tmp.rglob("*") if p.is_file()) if tmp.exists() else []


def test_an_anonymous_body_gets_401_before_it_is_read(client: TestClient, zone: Zone) -> None:
    # (That nothing of it is read is shown on a live server: tests/security/test_live_gate.py.)
    answer = _transition(client, b" " * 3 * MB)
    body_json = assert_problem(answer, 401, "unauthenticated")
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "Bearer" in body_json["detail"]
    # A dead token is told apart from none, and is refused as early.
    dead = _transition(client, b"{}", Authorization="Bearer not-a-token")
    assert "expired or revoked" in assert_problem(dead, 401, "unauthenticated")["detail"]


def test_an_anonymous_multipart_upload_gets_401_and_leaves_no_file(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    answer = client.post(
        "/api/v1/issues",
        data={"category": "flyposter", "description": "x"},
        files=files("photos", jpeg(), jpeg(seed=2)),
    )
    assert_problem(answer, 401, "unauthenticated")
    assert _tmp_files(settings) == []
    with Session(get_engine(settings.database_url)) as session:
        assert session.exec(select(Issue)).first() is None


def test_a_json_body_over_the_limit_gets_413_declared_or_streamed(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    auth = zone.headers("d_super")
    big = b'{"action": "accept", "note": "' + b"x" * (settings.max_json_bytes + 10) + b'"}'
    declared = _transition(client, big, **auth)
    body = assert_problem(declared, 413, "payload_too_large")
    assert f"{settings.max_json_kb} KB" in body["detail"]

    # Chunked (no Content-Length): refused as soon as the stream passes the limit.
    def chunks() -> Iterator[bytes]:
        for _ in range(48):
            yield b" " * 65536

    streamed = _transition(client, chunks(), **auth)
    assert_problem(streamed, 413, "payload_too_large")
    # In English on request, like every other error.
    english = _transition(client, big, **auth, **{"Accept-Language": "en"})
    assert english.json()["title"] == "Request body too large"
    # Within the limit the route answers as before (no such issue here).
    assert_problem(_transition(client, b'{"action": "accept"}', **auth), 404, "not_found")


def test_the_sign_in_body_is_capped_too(client: TestClient, zone: Zone) -> None:
    big = b'{"username": "a", "password": "' + b"x" * MB + b'"}'
    answer = client.post(
        "/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(answer, 413, "payload_too_large")


def test_a_get_without_a_token_still_gets_its_routes_401(client: TestClient, zone: Zone) -> None:
    assert_problem(client.get("/api/v1/issues"), 401, "unauthenticated")
    assert client.get("/api/v1/issues", headers=zone.headers("viewer")).status_code == 200


def test_one_token_lookup_per_request(client: TestClient, zone: Zone, settings: Settings) -> None:
    """The route and the conditional GET reuse the gate's lookup: one query for the token."""
    statements: list[str] = []
    writer, reader = get_engine(settings.database_url), get_read_engine(settings.database_url)
    # On SQLite the reader is the writer with options (the same events): listen once.
    engines = [writer] if reader.pool is writer.pool else [writer, reader]

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        headers = zone.headers("viewer")
        first = client.get("/api/v1/categories", headers=headers)
        assert first.status_code == 200
        lookups = [s for s in statements if "api_tokens" in s]
        assert len(lookups) == 1, lookups
        statements.clear()
        again = client.get(
            "/api/v1/categories", headers={**headers, "If-None-Match": first.headers["ETag"]}
        )
        assert again.status_code == 304
        queries = [s for s in statements if s != "BEGIN"]  # SQLite's deferred BEGIN
        assert len(queries) == 1 and "api_tokens" in queries[0], statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(
        database_url=database_url,
        upload_dir=tmp_path / "uploads",
        upload_burst=3,
        upload_window_s=3600,
    )
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_uploads_are_limited_per_token_in_the_database(
    limited: tuple[TestClient, Settings], zone: Zone
) -> None:
    client, settings = limited
    for _ in range(3):
        assert report(client, zone).status_code == 201
    refused = report(client, zone)
    body = assert_problem(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) == body["retry_after_s"]
    assert 1 <= body["retry_after_s"] <= settings.upload_window_s / 3 + 1
    assert _tmp_files(settings) == []
    # Another user's token still uploads; the state is in the database, for every replica.
    assert report(client, zone, "a_worker").status_code == 201
    with TestClient(create_app(settings)) as replica:
        assert_problem(report(replica, zone), 429, "too_many_requests")
    with Session(get_engine(settings.database_url)) as session:
        assert len(session.exec(select(Issue)).all()) == 4
        keys = set(session.exec(select(LoginThrottle.key)).all())
    assert sum(k.startswith("upload:") for k in keys) == 2
    # JSON writes are not uploads: the same token is still heard (and refused as a worker).
    accept = _transition(client, b'{"action": "accept"}', **zone.headers("grid_worker"))
    assert_problem(accept, 403, "forbidden")


def test_the_allowance_refills_one_interval_at_a_time(
    limited: tuple[TestClient, Settings], zone: Zone
) -> None:
    _client, settings = limited
    interval = timedelta(seconds=settings.upload_window_s / settings.upload_burst)
    now = utcnow()
    with Session(get_engine(settings.database_url)) as session:
        for _ in range(3):
            upload_throttle.take(session, settings, 99, now)
        with pytest.raises(TooManyRequests):
            upload_throttle.take(session, settings, 99, now)
        # One interval later there is room for one more, and not two.
        upload_throttle.take(session, settings, 99, now + interval)
        with pytest.raises(TooManyRequests) as refused:
            upload_throttle.take(session, settings, 99, now + interval)
    assert refused.value.extra["retry_after_s"] == round(interval.total_seconds())
