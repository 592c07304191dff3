"""The real app served on 127.0.0.1 for the tests that talk to it over HTTP."""

import socket
import threading
import time

import uvicorn

from app.config import Settings
from app.main import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_in_thread(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, int]:
    """uvicorn with the app in a thread of this process, on a free port, once it listens."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return server, thread, port


class Trickler:
    """An HTTP receiver on 127.0.0.1 that answers 200 a byte at a time, every `interval` s.

    Each read a client makes gets a byte well within any per-read timeout, so only a total
    deadline cuts it off; `cut_off` says whether the client hung up before the answer ended."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.cut_off = False
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _serve(self) -> None:
        with self._listener:
            connection, _address = self._listener.accept()
        with connection:
            connection.settimeout(5)
            connection.recv(65536)  # the request (small); its content is not the point
            self.requests += 1
            try:
                for byte in self.ANSWER:
                    time.sleep(self.interval)
                    connection.sendall(bytes([byte]))
            except OSError:
                self.cut_off = True
        self._done.set()

    def wait(self, timeout: float = 30) -> bool:
        """Until the answer was sent or cut off; False if neither happened in time."""
        return self._done.wait(timeout)


BOUNDARY = "gridproof-test-boundary"
# What a trickled report says besides its photos.
REPORT_FIELDS = {"category": "flyposter", "description": "小广告", "lat": "34.75", "lon": "113.78"}


class TrickledReport:
    """POST /api/v1/issues over a raw socket, its multipart body sent a piece at a time, so that
    the test decides where in the body the server is when something happens to it (a kill, the
    store going away)."""

    def __init__(
        self,
        port: int,
        token: str,
        photos: list[bytes],
        fields: dict[str, str] | None = None,
        pause: float = 0.0,
    ) -> None:
        part = '--{}\r\nContent-Disposition: form-data; name="{}"\r\n\r\n{}\r\n'
        items = (fields or REPORT_FIELDS).items()
        body = b"".join(part.format(BOUNDARY, k, v).encode() for k, v in items)
        self.photo_ends: list[int] = []  # where each photo's part ends in the body
        for i, photo in enumerate(photos):
            body += (
                f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
                f'name="photos"; filename="{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            body += photo + b"\r\n"
            self.photo_ends.append(len(body))
        self.body = body + f"--{BOUNDARY}--\r\n".encode()
        self.sent = 0
        self.pause = pause  # seconds between pieces
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(
            (
                f"POST /api/v1/issues HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\nConnection: close\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            ).encode()
        )

    def send(self, up_to: int, chunk: int = 256 * 1024) -> None:
        while self.sent < up_to:
            piece = self.body[self.sent : min(up_to, self.sent + chunk)]
            self.sock.sendall(piece)
            self.sent += len(piece)
            if self.pause:
                time.sleep(self.pause)

    def finish(self) -> tuple[int, dict[str, str], bytes]:
        """The rest of the body, then the answer: status, headers (lower-case names), body."""
        self.send(len(self.body))
        answer = b""
        while data := self.sock.recv(65536):
            answer += data
        self.sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), headers, body
