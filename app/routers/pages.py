"""The phone app at /m/: static files (no build step).

Served by Starlette's StaticFiles (ETag and 304, HEAD, ranges, path checks) with the pages'
headers added; answers are compressed by the app's middleware. Only the service worker is
rendered: it carries a version made from every file of the app, so that a phone fetches the
new shell when any file changed.
"""

import hashlib
import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app import etags

router = APIRouter(include_in_schema=False)

PHONE_DIR = Path(__file__).resolve().parent.parent / "web" / "m"
# Pinned third-party scripts served from here (app/web/vendor/README.md says what and whence).
VENDOR_DIR = PHONE_DIR.parent / "vendor"
# The page talks only to its own origin; photos are shown from blob: URLs made from
# authenticated fetches, so no inline script or style is ever needed.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "script-src 'self'; style-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
VERSION_MARK = b"__SHELL_VERSION__"
# What Python 3.11's table lacks or names otherwise (it says application/javascript).
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/manifest+json", ".webmanifest")


class PageFiles(StaticFiles):
    """StaticFiles with the pages' headers: always revalidate (the service worker keeps the
    offline copy, the network brings the news), nosniff, and the CSP on HTML."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.media_type and response.media_type.startswith("text/html"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Referrer-Policy"] = "no-referrer"
        return response


def phone_files() -> list[Path]:
    """Every file of the app."""
    return sorted(p for p in PHONE_DIR.rglob("*") if p.is_file())


def _shell_signature() -> tuple[tuple[str, int, int], ...]:
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in phone_files())


@lru_cache(maxsize=2)
def _service_worker(signature: tuple[tuple[str, int, int], ...]) -> tuple[bytes, str]:
    """sw.js with the shell's version written in, and its ETag (read again when a file
    changes: a few stat calls per request)."""
    digest = hashlib.sha256()
    for path in phone_files():
        digest.update(path.relative_to(PHONE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    version = digest.hexdigest()[:16].encode()
    body = (PHONE_DIR / "sw.js").read_bytes().replace(VERSION_MARK, version)
    return body, etags.content_etag(body)


@router.api_route("/", methods=["GET", "HEAD"])
def root() -> RedirectResponse:
    """The phone app is the front door."""
    return RedirectResponse("/m/")


@router.api_route("/m", methods=["GET", "HEAD"])
def phone_app_slash() -> RedirectResponse:
    return RedirectResponse("/m/")


@router.api_route("/m/sw.js", methods=["GET", "HEAD"])
def service_worker(request: Request) -> Response:
    """The service worker, versioned by the files of the shell it caches."""
    body, etag = _service_worker(_shell_signature())
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",
        "Service-Worker-Allowed": "/m/",
        "X-Content-Type-Options": "nosniff",
    }
    cached = etags.not_modified(request, etag, headers)
    if cached is not None:
        return cached
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


phone_app = PageFiles(directory=PHONE_DIR, html=True)
