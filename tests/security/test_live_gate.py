"""`gridproof serve` in its own process (issue 17 items 1 and 2), probed from outside as the
security review did: anonymous bodies get 401 before they are read (the server's peak memory
and uploads/tmp unchanged), heads over the limits get problem+json, and 30 wrong passwords get
429 from some point on while another user still signs in."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from app.db import get_engine
from tests import factories
from tests.factories import PASSWORD, assert_problem
from tests.servers import free_port

MB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    url: str
    port: int
    pid: int
    upload_dir: Path
    zone: factories.Zone

    def status(self, field: str) -> int:
        """A figure of /proc/<pid>/status in kB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def tmp_files(self) -> list[Path]:
        tmp = self.upload_dir / "tmp"
        return sorted(p for p in tmp.rglob("*") if p.is_file()) if tmp.exists() else []


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        zone = factories.make_zone(session)
    port = free_port()
    env = {
        **os.environ,
        "GRIDPROOF_DATABASE_URL": database_url,
        "GRIDPROOF_UPLOAD_DIR": str(tmp_path / "uploads"),
        "GRIDPROOF_WEBHOOK_WORKER": "false",
    }
    command = [sys.executable, "-m", "app", "serve", "--port", str(port), "--image-processes", "0"]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"gridproof serve did not start: {server.stderr.read()!r}")
        time.sleep(0.2)
    yield Served(url, port, server.pid, tmp_path / "uploads", zone)
    server.terminate()
    server.wait(timeout=20)


def _raw(port: int, head: bytes, body_part: bytes = b"") -> tuple[int, dict[str, str], Any]:
    """Send a request's head and the start of its body only, and read the answer: it must
    come without the rest of the body (the socket waits 10 s at most, then the test fails)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body_part)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the server closed without answering"
            data += chunk
        head_text, _, rest = data.partition(b"\r\n\r\n")
        lines = head_text.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        headers = {name.lower(): value for name, value in headers.items()}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "the answer was cut short"
            rest += chunk
        status = int(lines[0].split()[1])
        body = json.loads(rest[:length]) if length else None
        return status, headers, body


def test_an_anonymous_3_mb_json_gets_401_unread_and_memory_stays(served: Served) -> None:
    # Before any of its body arrives: the answer comes with 64 kB of 3 MB sent.
    head = (
        b"POST /api/v1/issues/1/transitions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nIf-Match: "1"\r\n'
        + f"Content-Length: {3 * MB}\r\n\r\n".encode()
    )
    status, headers, body = _raw(served.port, head, b"[" + b"1," * 32767)
    assert status == 401 and body["code"] == "unauthenticated", body
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["www-authenticate"] == "Bearer"
    # Sent in full, again and again: the server's peak memory does not grow with them.
    array = b"[" + b"1," * (3 * MB // 2 - 1) + b"1]"
    with httpx.Client(base_url=served.url, timeout=30) as client:
        client.get("/healthz")
        before = served.status("VmRSS")
        served.reset_peak()
        for _ in range(5):
            answer = client.post(
                "/api/v1/issues/1/transitions",
                content=array,
                headers={"Content-Type": "application/json", "If-Match": '"1"'},
            )
            assert_problem(answer, 401, "unauthenticated")
        peak = served.status("VmHWM")
    # A body read in full would raise the peak by its 3 MB at least (and its parse by more).
    assert peak - before < 1024, (before, peak)


def test_an_anonymous_multipart_upload_gets_401_before_a_file_is_spooled(
    served: Served,
) -> None:
    photo = factories.jpeg()
    boundary = "gridproofboundary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; '
        f'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode() + photo
    head = (
        b"POST /api/v1/issues HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
        + f"Content-Length: {len(part) + 20 * MB}\r\n\r\n".encode()
    )
    status, _headers, body = _raw(served.port, head, part)
    assert status == 401 and body["code"] == "unauthenticated", body
    assert served.tmp_files() == []
    # The same upload sent in full, with a photo field: 401, and still nothing spooled.
    with httpx.Client(base_url=served.url, timeout=30) as client:
        answer = client.post(
            "/api/v1/issues",
            data={"category": "flyposter", "description": "x"},
            files=factories.files("photos", photo, factories.jpeg(seed=2)),
        )
    assert_problem(answer, 401, "unauthenticated")
    assert served.tmp_files() == []


def test_heads_over_the_limits_get_problem_json(served: Served) -> None:
    long_target = b"GET /api/v1/issues?q=" + b"x" * (9 * 1024) + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    status, headers, body = _raw(served.port, long_target)
    assert status == 414 and body["code"] == "uri_too_long", body
    assert headers["content-type"].startswith("application/problem+json")
    many = b"".join(f"X-Filler-{i}: {'y' * 1000}\r\n".encode() for i in range(20))
    status, _headers, body = _raw(served.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + many)
    assert status == 431 and body["code"] == "headers_too_large", body
    # One header that never ends is refused as soon as it passes the limit.
    endless = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Endless: " + b"z" * (64 * 1024)
    status, _headers, body = _raw(served.port, endless)
    assert status == 431 and body["code"] == "headers_too_large", body
    english = b"GET /healthz HTTP/1.1\r\nAccept-Language: en\r\n" + many
    assert _raw(served.port, english)[2]["title"] == "The request headers are too large"
    # Within the limits: answered as usual (12 kB of headers, a 6 kB target).
    fine = many[: 12 * 1024 - 100].rsplit(b"\r\n", 1)[0] + b"\r\n"
    status, _headers, body = _raw(
        served.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + fine + b"\r\n"
    )
    assert status == 200 and body == {"status": "ok"}
    headers_ok = {"Authorization": f"Bearer {served.zone.tokens['viewer']}"}
    answer = httpx.get(f"{served.url}/api/v1/issues?q={'x' * 6000}", headers=headers_ok)
    assert answer.status_code in (200, 422), answer.text


def test_thirty_wrong_passwords_get_429_while_another_user_signs_in(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        statuses = []
        for i in range(30):
            answer = client.post(
                "/api/v1/auth/login", json={"username": "a_worker", "password": f"guess {i}"}
            )
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                body = assert_problem(answer, 429, "too_many_requests")
                assert int(answer.headers["Retry-After"]) == body["retry_after_s"] >= 1
        assert set(statuses) <= {401, 429}, statuses
        assert 429 in statuses[:10] and statuses[-10:] == [429] * 10, statuses
        good = client.post(
            "/api/v1/auth/login", json={"username": "b_worker", "password": PASSWORD}
        )
        assert good.status_code == 200 and good.json()["token"]
        blocked = client.post(
            "/api/v1/auth/login", json={"username": "a_worker", "password": PASSWORD}
        )
        assert_problem(blocked, 429, "too_many_requests")
