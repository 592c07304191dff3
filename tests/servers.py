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
