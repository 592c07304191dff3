"""How `gridproof serve` runs uvicorn: the request's head is limited, and refused as
problem+json by the server before the app sees it.

uvicorn's default HTTP protocol (httptools, from `uvicorn[standard]`) sets no limit on the
request line or the headers: a client may send megabytes of headers, held in memory until they
end. `LimitedHttpToolsProtocol` counts them as they arrive: a request target over
`MAX_TARGET_BYTES` is answered 414 `uri_too_long`, a head (request line and headers) over
`MAX_HEAD_BYTES` is answered 431 `headers_too_large`, both as problem+json with
`Connection: close`, and the connection is closed. (uvicorn's own answer to a head it cannot
parse is a plain-text 400; h11, uvicorn's other protocol, limits the head with
`h11_max_incomplete_event_size`, set to the same size in `uvicorn_options` should httptools
be missing, but answers that plain 400 too.)
"""

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import PROBLEM_JSON, AppError, HeadersTooLarge, UriTooLong, problem_body

MAX_TARGET_BYTES = 8 * 1024
MAX_HEAD_BYTES = 16 * 1024
TARGET_LIMIT = f"the request target may be at most {MAX_TARGET_BYTES // 1024} KB"
HEAD_LIMIT = f"the request line and headers may be at most {MAX_HEAD_BYTES // 1024} KB in all"


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limited (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # waiting for (the rest of) a request's head
        self._head_bytes = 0  # bytes received while waiting for it
        self._header_bytes = 0  # of the request line and the headers handed over so far
        self._refusal: AppError | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self._closing():
            # One header still arriving (httptools hands it over only once it ends).
            self._refusal = HeadersTooLarge(HEAD_LIMIT)
            self.send_400_response("")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_TARGET_BYTES:
            self._refusal = UriTooLong(TARGET_LIMIT)
            raise ValueError("request target too long")  # httptools stops: send_400_response

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_bytes += len(name) + len(value) + 4
        if len(self.url) + self._header_bytes > MAX_HEAD_BYTES:
            self._refusal = HeadersTooLarge(HEAD_LIMIT)
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._header_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().send_400_response(msg)
            return
        title, detail = refusal.texts(_english(self.headers or []))
        payload = json.dumps(
            problem_body(refusal.status, refusal.code, title, detail), ensure_ascii=False
        ).encode()
        head = [
            f"HTTP/1.1 {refusal.status} {_REASONS[refusal.status]}".encode(),
            f"content-type: {PROBLEM_JSON}".encode(),
            f"content-length: {len(payload)}".encode(),
            b"connection: close",
        ]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + payload)
        self.transport.close()

    def _closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()


_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}


def _english(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"accept-language":
            return value.split(b",")[0].strip().lower().startswith(b"en")
    return False


def uvicorn_options() -> dict[str, Any]:
    """The options `gridproof serve` gives uvicorn.run."""
    return {"http": LimitedHttpToolsProtocol, "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
