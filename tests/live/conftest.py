"""A live server (uvicorn on 127.0.0.1, in a thread) per test, and a real webhook receiver."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from app.config import Settings
from app.db import get_engine
from app.services import auth
from tests import factories
from tests.servers import serve_in_thread

SIGNING_SECRET = "test-signing-secret"


def live_settings(database_url: str, root: Path) -> Settings:
    return Settings(
        database_url=database_url,
        upload_dir=root / "uploads",
        signing_secret=SIGNING_SECRET,
        webhook_allow_private=True,  # the receivers listen on 127.0.0.1
        webhook_poll_seconds=0.2,
        webhook_retry_base_seconds=0.3,
        webhook_timeout_seconds=2,
        webhook_overdue_scan_seconds=0.3,
    )


@dataclass
class Live:
    url: str
    settings: Settings
    zone: factories.Zone
    key: str  # an external system's api_key (username "12345")

    def api(self, username: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.zone.headers(username), timeout=30)

    def session(self) -> Session:
        return Session(get_engine(self.settings.database_url), expire_on_commit=False)


@contextmanager
def start_live(settings: Settings) -> Iterator[Live]:
    """The zone, an external system's key and a server with these settings."""
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        zone = factories.make_zone(session)
        _user, key = auth.create_user(session, "12345", "external", "D")
    server, thread, port = serve_in_thread(settings)
    try:
        yield Live(f"http://127.0.0.1:{port}", settings, zone, key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[Live]:
    with start_live(live_settings(database_url, tmp_path)) as started:
        yield started


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers with `statuses` in turn (then 200)."""

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    delay: float = 0
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(Received(dict(self.headers), body))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def verify_signature(secret: str, received: Received, tolerance: int = 300) -> bool:
    """What a receiver does (the README's snippet)."""
    parts = dict(p.split("=", 1) for p in received.headers["Gridproof-Signature"].split(","))
    if abs(time.time() - int(parts["t"])) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def wait_for(check: Callable[[], Any], seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
