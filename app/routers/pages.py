"""The phone app at /m/: static files (no build step), served compressed and revalidated."""

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from app import etags
from app.errors import NotFound

router = APIRouter(include_in_schema=False)

PHONE_DIR = Path(__file__).resolve().parent.parent / "web" / "m"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
}
# The page talks only to its own origin; photos are shown from blob: URLs made from
# authenticated fetches, so no inline script or style is ever needed.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "script-src 'self'; style-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
VERSION_MARK = b"__SHELL_VERSION__"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


def phone_files() -> dict[str, StaticFile]:
    """Every file of the app; read again only when one changes (a few stat calls)."""
    paths = sorted(p for p in PHONE_DIR.rglob("*") if p.is_file() and p.suffix in TYPES)
    return _load(tuple((p, p.stat().st_mtime_ns, p.stat().st_size) for p in paths))


@lru_cache(maxsize=2)
def _load(signature: tuple[tuple[Path, int, int], ...]) -> dict[str, StaticFile]:
    """The files, gzipped once; sw.js carries a version made from all of them."""
    raw = {p.relative_to(PHONE_DIR).as_posix(): p.read_bytes() for p, _mtime, _size in signature}
    digest = hashlib.sha256()
    for name, body in raw.items():
        digest.update(name.encode() + b"\0" + body)
    version = digest.hexdigest()[:16].encode()
    files = {}
    for name, body in raw.items():
        if name == "sw.js":
            body = body.replace(VERSION_MARK, version)
        files[name] = StaticFile(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            media_type=TYPES[Path(name).suffix],
            etag=etags.content_etag(body),
        )
    return files


def _serve(request: Request, name: str) -> Response:
    found = phone_files().get(name)
    if found is None:
        raise NotFound(f"no file /m/{name}")
    headers = {
        "ETag": found.etag,
        # Always revalidate: the service worker gives the offline copy, the network the news.
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if name == "sw.js":
        headers["Service-Worker-Allowed"] = "/m/"
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = CSP
        headers["Referrer-Policy"] = "no-referrer"
    cached = etags.not_modified(request, found.etag, headers)
    if cached is not None:
        return cached
    body = found.body
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = found.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=found.media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
def root() -> RedirectResponse:
    """The phone app is the front door."""
    return RedirectResponse("/m/")


@router.api_route("/m", methods=["GET", "HEAD"])
def phone_app_slash() -> RedirectResponse:
    return RedirectResponse("/m/")


@router.api_route("/m/", methods=["GET", "HEAD"])
def phone_app(request: Request) -> Response:
    """The phone app for grid workers and supervisors."""
    return _serve(request, "index.html")


@router.api_route("/m/{name:path}", methods=["GET", "HEAD"])
def phone_app_file(name: str, request: Request) -> Response:
    """The app's scripts, styles, service worker, manifest and icons."""
    return _serve(request, name)
