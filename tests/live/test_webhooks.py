"""Signed webhooks to real receivers on 127.0.0.1, from a live server."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlmodel import select

from app.models import Issue, WebhookDelivery
from app.models.base import utcnow
from app.services import audit
from tests import factories
from tests.live.conftest import (
    Live,
    Receiver,
    live_settings,
    start_live,
    verify_signature,
    wait_for,
)
from tests.servers import Trickler, free_port

EVENTS = ["issue.created", "issue.status_changed", "issue.overdue", "issue.flags_raised"]


def subscribe(
    live: Live, url: str, events: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    with live.api("admin") as client:
        response = client.post(
            "/api/v1/webhooks", json={"url": url, "events": events or EVENTS, **extra}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def report(live: Live, **fields: Any) -> str:
    data = {"api_key": live.key, "service_code": "flyposter", "lat": "34.7512", "long": "113.7801"}
    response = httpx.post(f"{live.url}/open311/v2/requests.json", data=data | fields, timeout=30)
    assert response.status_code == 201, response.text
    code: str = response.json()[0]["service_request_id"]
    return code


def log(live: Live, subscription_id: int) -> list[dict[str, Any]]:
    with live.api("admin") as client:
        response = client.get(f"/api/v1/webhooks/{subscription_id}/deliveries")
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows


def test_a_delivery_is_signed_and_logged(live: Live, receiver: Receiver) -> None:
    subscription = subscribe(live, receiver.url)
    code = report(live)
    got = wait_for(lambda: receiver.received)[0]
    assert verify_signature(subscription["secret"], got)
    assert not verify_signature("another secret", got)
    body = got.json()
    assert body["event"] == "issue.created" and body["issue"]["code"] == code
    assert body["issue"]["source"] == "12345" and got.headers["Gridproof-Event"] == "issue.created"
    rows = wait_for(
        lambda: [r for r in log(live, subscription["id"]) if r["status"] == "delivered"]
    )
    assert rows[0]["attempts"] == 1 and rows[0]["last_status_code"] == 200
    with live.api("admin") as client:
        listed = client.get("/api/v1/webhooks").json()
        assert listed[0]["secret"] is None  # shown only when created


def test_status_changes_and_overdue_are_told(live: Live, receiver: Receiver) -> None:
    subscribe(live, receiver.url, ["issue.status_changed", "issue.overdue"])
    report(live)
    issue = live_issue(live)
    with live.api("d_super") as client:
        deadline = (utcnow() + timedelta(seconds=2)).isoformat()
        response = client.post(
            f"/api/v1/issues/{issue['id']}/transitions",
            json={"action": "dispatch", "org_unit": "A", "deadline": deadline},
            headers={"If-Match": f'"{issue["version"]}"'},
        )
        assert response.status_code == 200, response.text
    wanted = {"issue.status_changed", "issue.overdue"}
    wait_for(lambda: {r.json()["event"] for r in receiver.received} >= wanted)
    events = [r.json() for r in receiver.received]
    changed = next(e for e in events if e["event"] == "issue.status_changed")
    assert (
        changed["change"]["from_status"] == "reported"
        and changed["issue"]["status"] == "dispatched"
    )
    assert [e["event"] for e in events].count("issue.overdue") == 1
    time.sleep(1)  # further scans do not tell it again
    assert [r.json()["event"] for r in receiver.received].count("issue.overdue") == 1


def live_issue(live: Live) -> dict[str, Any]:
    with live.api("d_super") as client:
        item: dict[str, Any] = client.get("/api/v1/issues").json()["items"][-1]
        return item


def test_a_receiver_failing_twice_gets_the_third_attempt(live: Live, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    subscription = subscribe(live, receiver.url, ["issue.created"])
    started = time.monotonic()
    report(live)
    assert time.monotonic() - started < 5  # the caller never waits for the receiver
    rows = wait_for(
        lambda: [r for r in log(live, subscription["id"]) if r["status"] == "delivered"]
    )
    assert rows[0]["attempts"] == 3 and rows[0]["last_error"] is None
    assert len(receiver.received) == 3
    assert len({r.json()["id"] for r in receiver.received}) == 1  # one event, sent three times


def test_a_slow_receiver_delays_no_one_else(live: Live, receiver: Receiver) -> None:
    slow = Receiver(delay=1.5).start()
    try:
        subscribe(live, slow.url, ["issue.created"])
        subscribe(live, receiver.url, ["issue.created"])
        started = time.monotonic()
        report(live)
        report(live)
        assert time.monotonic() - started < 3
        wait_for(lambda: len(receiver.received) == 2, 2.5)
        assert len(slow.received) <= 2
    finally:
        slow.stop()


def test_a_trickling_receiver_is_cut_off_at_the_deadline(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """A receiver sending its answer a byte at a time does not keep the sender past the total
    deadline: the attempt is logged as failed (and retried), and the others are served."""
    settings = live_settings(database_url, tmp_path).model_copy(
        update={"webhook_deadline_seconds": 1, "webhook_retry_base_seconds": 600}
    )
    with start_live(settings) as live:
        trickler = Trickler(interval=0.25)  # the whole answer would take about 17 s
        trickled = subscribe(live, trickler.url, ["issue.created"])
        subscribe(live, receiver.url, ["issue.created"])
        report(live)
        assert trickler.wait()
        assert trickler.cut_off
        rows = wait_for(lambda: [r for r in log(live, trickled["id"]) if r["attempts"] == 1])
        assert rows[0]["status"] == "pending" and "DeadlineExceeded" in rows[0]["last_error"]
        assert len(wait_for(lambda: receiver.received)) == 1


def test_a_rolled_back_change_delivers_nothing(live: Live, receiver: Receiver) -> None:
    subscription = subscribe(live, receiver.url, ["issue.status_changed"])
    report(live)
    wait_for(lambda: live_issue(live))
    with live.session() as session:
        issue = session.exec(select(Issue)).one()
        actor = live.zone.users["d_super"]
        issue.status = "accepted"
        audit.append_event(session, issue, actor, "accept", utcnow(), from_status="reported")
        session.flush()  # the outbox row exists in the transaction …
        assert session.exec(select(WebhookDelivery)).all()
        session.rollback()  # … and goes with it
    time.sleep(1.5)
    assert receiver.received == [] and log(live, subscription["id"]) == []


def test_subscription_urls_are_checked(client: TestClient, zone: factories.Zone) -> None:
    admin = zone.headers("admin")
    for url in [
        "ftp://example.com/hook",
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "file:///etc/passwd",
    ]:
        response = client.post(
            "/api/v1/webhooks", json={"url": url, "events": ["issue.created"]}, headers=admin
        )
        factories.assert_problem(response, 422, "validation_error")
    response = client.post(
        "/api/v1/webhooks",
        json={"url": "http://93.184.216.34/hook", "events": ["issue.created"]},
        headers=zone.headers("d_super"),
    )
    factories.assert_problem(response, 403, "forbidden")
    response = client.post(
        "/api/v1/webhooks",
        json={"url": "http://93.184.216.34/hook", "events": ["nope"]},
        headers=admin,
    )
    factories.assert_problem(response, 422, "validation_error")
    assert client.get("/api/v1/webhooks/99/deliveries", headers=admin).status_code == 404


def test_a_killed_server_delivers_after_restart(database_url: str, tmp_path: Path) -> None:
    """The server is killed (SIGKILL) with a delivery pending; the next one sends it."""
    from sqlmodel import Session

    from app.db import get_engine
    from app.services import auth

    settings = live_settings(database_url, tmp_path)
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        zone = factories.make_zone(session)
        _user, key = auth.create_user(session, "12345", "external", "D")
    receiver = Receiver(port=free_port())  # not listening yet: connection refused
    env = os.environ | {
        "GRIDPROOF_DATABASE_URL": database_url,
        "GRIDPROOF_UPLOAD_DIR": str(settings.upload_dir),
        "GRIDPROOF_SIGNING_SECRET": "s",
        "GRIDPROOF_WEBHOOK_ALLOW_PRIVATE": "true",
        "GRIDPROOF_WEBHOOK_POLL_SECONDS": "0.2",
        "GRIDPROOF_WEBHOOK_RETRY_BASE_SECONDS": "0.3",
        "GRIDPROOF_WEBHOOK_RETRY_MAX_SECONDS": "1",
    }
    port = free_port()
    server = _start(env, port)
    live = Live(f"http://127.0.0.1:{port}", settings, zone, key)
    try:
        subscription = subscribe(live, receiver.url, ["issue.created"])
        report(live)
        wait_for(lambda: (log(live, subscription["id"]) or [{}])[0].get("attempts", 0) >= 1)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    receiver.start()
    try:
        server = _start(env, port)
        try:
            row = wait_for(
                lambda: [r for r in log(live, subscription["id"]) if r["status"] == "delivered"]
            )[0]
            assert row["attempts"] >= 2 and len(receiver.received) == 1
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        receiver.stop()


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")
