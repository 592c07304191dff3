"""An HTTP POST with a total deadline, for talking to receivers we do not control.

httpx's timeouts are per operation: a receiver that trickles its answer a byte at a time never
lets one read wait long enough to time out, and would hold a sender thread for as long as it
likes. Here a timer shuts the request's sockets down when the total deadline passes, which
wakes the blocked read (whatever phase: status line, headers or body) with an error; the
answer's body is read only up to MAX_BODY bytes.
"""

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any

import httpx

MAX_BODY = 64 * 1024


class DeadlineExceeded(Exception):
    """The receiver did not answer completely within the total deadline."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    text: str


class _Sockets:
    """The request's sockets, as httpcore's trace reports them; shut down when time is up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if not name.endswith((".connect_tcp.complete", ".start_tls.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self.expired:
                    _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def post(
    url: str, content: bytes, headers: dict[str, str], timeout: float, deadline: float
) -> Answer:
    """POST and read the answer within `deadline` seconds in all; DeadlineExceeded if not.

    `timeout` bounds each operation (connect, one read) as httpx does."""
    sockets = _Sockets()
    timer = threading.Timer(deadline, sockets.expire)
    timer.daemon = True
    timer.start()
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(
                "POST", url, content=content, headers=headers, extensions={"trace": sockets.trace}
            ) as response,
        ):
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= MAX_BODY:
                    break
            text = bytes(body[:MAX_BODY]).decode(response.encoding or "utf-8", "replace")
            return Answer(response.status_code, text)
    except httpx.HTTPError as exc:
        if sockets.expired:
            raise DeadlineExceeded(f"no complete answer within {deadline:g} s") from exc
        raise
    finally:
        timer.cancel()
