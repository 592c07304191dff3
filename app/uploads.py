"""Photo uploads stream into storage as they arrive.

The routes that take photos use `PhotoUploadRoute`: their multipart body is parsed here, not
by Starlette's `Request.form()`, and each file part is written straight into a storage temp
file (size-capped on the way by `storage.PhotoSpool`), so the pipeline starts from a stored
file. Starlette would spool the part into a SpooledTemporaryFile (to disk past
1 MB, one threadpool hop per chunk received) that the pipeline then copied again. Text fields
and the form limits (`max_files`, `max_fields`, `max_part_size`) behave as Starlette's.
"""

import codecs
import os
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi import Request, Response, UploadFile
from fastapi.routing import APIRoute
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.config import MB, Settings
from app.errors import AppError
from app.services.storage import CHUNK, PhotoSpool, SpooledPhoto, Storage, Upload


class PhotoUploadRoute(APIRoute):
    """A route whose multipart file parts stream into storage (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def upload_handler(request: Request) -> Response:
            try:
                return await handler(PhotoUploadRequest(request.scope, request.receive))
            except HTTPException as exc:
                # FastAPI answers any error raised while it reads the form with a 400; a photo
                # refused while it streamed in (photo_too_large) answers as itself.
                if isinstance(exc.__cause__, AppError):
                    raise exc.__cause__ from None
                raise

        return upload_handler


class PhotoUploadRequest(Request):
    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = MB,
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is not None or content_type != b"multipart/form-data":
            return await super()._get_form(
                max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
            )
        settings: Settings = self.app.state.settings
        try:
            async with aclosing(self.stream()) as stream:
                parser = _PhotoFormParser(
                    self.headers, stream, settings, max_files, max_fields, max_part_size
                )
                self._form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(status_code=400, detail=exc.message) from exc
        return self._form


class SpooledUploadFile(UploadFile):
    """A file part already in storage's tmp folder; `file` is that temp file, rewound."""

    def __init__(self, spool: PhotoSpool, spooled: SpooledPhoto, filename: str, headers: Headers):
        super().__init__(spool.file, size=spooled.size, filename=filename, headers=headers)
        self.spooled = spooled

    async def close(self) -> None:
        """Remove the temp file, unless the pipeline has moved it into place. (Its name may be
        a later temp file's by then; while ours is open, the same inode means the same file.)"""
        try:
            if os.path.samestat(os.fstat(self.file.fileno()), os.stat(self.spooled.path)):
                self.spooled.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            self.file.close()


def spooled(files: list[UploadFile]) -> list[Upload]:
    """The photos a `PhotoUploadRoute` spooled for a file parameter (a part that Starlette
    parsed after all, should its form parsing ever bypass ours, is copied by the pipeline)."""
    return [f.spooled if isinstance(f, SpooledUploadFile) else f.file for f in files]


class _FilePart:
    """One file part: data waiting to be written, and the spool once it is opened."""

    def __init__(self, filename: str, headers: Headers, settings: Settings) -> None:
        self.filename = filename
        self.headers = headers
        self.settings = settings
        self.pending: list[bytes | memoryview] = []
        self.pending_bytes = 0
        self.ended = False
        self.spool: PhotoSpool | None = None
        self.upload: SpooledUploadFile | None = None

    def write_pending(self) -> None:
        """Write what is pending, and finish when the part has ended (in the threadpool)."""
        if self.spool is None:
            self.spool = PhotoSpool(self.settings, Storage(self.settings.upload_dir))
        for data in self.pending:
            self.spool.write(data)
        self.pending.clear()
        self.pending_bytes = 0
        if self.ended:
            self.upload = SpooledUploadFile(
                self.spool, self.spool.finish(), self.filename, self.headers
            )

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()


class _PhotoFormParser:
    """python-multipart's MultipartParser, with file parts written into `PhotoSpool`s.

    The parser's callbacks run on the event loop and only collect data; the writing runs in
    the threadpool, a megabyte at a time."""

    def __init__(
        self,
        headers: Headers,
        stream: AsyncGenerator[bytes, None],
        settings: Settings,
        max_files: int | float,
        max_fields: int | float,
        max_part_size: int,
    ) -> None:
        self._headers = headers
        self._stream = stream
        self._settings = settings
        self._max_files = max_files
        self._max_fields = max_fields
        self._max_part_size = max_part_size
        self._charset = "utf-8"
        self._items: list[tuple[str, str | _FilePart]] = []
        self._files: list[_FilePart] = []
        self._fields = 0
        self._part_headers: list[tuple[bytes, bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._field = bytearray()
        self._file: _FilePart | None = None

    async def parse(self) -> FormData:
        _, params = parse_options_header(self._headers["Content-Type"])
        charset = params.get(b"charset", b"utf-8").decode("latin-1")
        try:
            self._charset = codecs.lookup(charset).name
        except LookupError:
            self._charset = "latin-1"
        if b"boundary" not in params:
            raise MultiPartException("Missing boundary in multipart.")
        parser = MultipartParser(
            params[b"boundary"],
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )
        try:
            async for chunk in self._stream:
                parser.write(chunk)
                await self._write_files()
            parser.finalize()
            await self._write_files()
        except BaseException as exc:
            for part in self._files:
                part.discard()
            if isinstance(exc, FormParserError):
                raise MultiPartException("Invalid multipart data.") from exc
            raise
        for part in self._files:
            if not part.ended:  # the body stopped inside it: it is not in the form
                part.discard()
        return FormData([(name, _value(item)) for name, item in self._items])

    async def _write_files(self) -> None:
        for part in self._files:
            if part.upload is None and (part.ended or part.pending_bytes >= CHUNK):
                await run_in_threadpool(part.write_pending)

    # python-multipart's callbacks

    def _on_part_begin(self) -> None:
        self._part_headers = []
        self._field = bytearray()
        self._file = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part_headers.append((self._header_name.lower(), self._header_value))
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        disposition = dict(self._part_headers).get(b"content-disposition")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise MultiPartException(
                'The Content-Disposition header field "name" must be provided.'
            )
        self._name = self._decode(options[b"name"])
        if b"filename" in options:
            if len(self._files) >= self._max_files:
                raise MultiPartException(
                    f"Too many files. Maximum number of files is {self._max_files}."
                )
            filename = self._decode(options[b"filename"])
            self._file = _FilePart(filename, Headers(raw=self._part_headers), self._settings)
            self._files.append(self._file)
        else:
            self._fields += 1
            if self._fields > self._max_fields:
                raise MultiPartException(
                    f"Too many fields. Maximum number of fields is {self._max_fields}."
                )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            # A view of bytes (what ASGI servers send) is safe to keep until it is written.
            view = memoryview(data)[start:end]
            self._file.pending.append(view if view.readonly else view.tobytes())
            self._file.pending_bytes += end - start
            return
        if len(self._field) + end - start > self._max_part_size:
            raise MultiPartException(
                f"Part exceeded maximum size of {int(self._max_part_size / 1024)}KB."
            )
        self._field += data[start:end]

    def _on_part_end(self) -> None:
        if self._file is not None:
            self._file.ended = True
            self._items.append((self._name, self._file))
        else:
            self._items.append((self._name, self._decode(self._field)))

    def _decode(self, data: bytes | bytearray) -> str:
        try:
            return data.decode(self._charset)
        except (UnicodeDecodeError, LookupError):
            return data.decode("latin-1")


def _value(item: str | _FilePart) -> str | UploadFile:
    if isinstance(item, str):
        return item
    assert item.upload is not None  # every part has ended and been written
    return item.upload
