"""The auditor's page (/audit): static HTML, a JS module and CSS, no build step, no CDN.

The flag filter's options are written into the HTML by the server, worded by flag_text (the
one place that words a flag), so that no copy of those sentences lives in JavaScript.
"""

import html
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from app import etags
from app.routers.pages import CSP
from app.services import flag_text

AUDIT_DIR = Path(__file__).resolve().parent.parent / "web" / "audit"
FLAG_MARK = b"<!--FLAG_OPTIONS-->"

router = APIRouter(tags=["pages"])


@lru_cache(maxsize=2)
def _page(mtime_ns: int) -> tuple[bytes, str]:
    """index.html with the flag options written in, and its ETag (read again on a change)."""
    options = "".join(
        f'<option value="{html.escape(code)}">'
        f"{html.escape(flag_text.sentence(code, flag_text.PhotoFacts()))}</option>"
        for code in flag_text.SENTENCES
    )
    body = (AUDIT_DIR / "index.html").read_bytes().replace(FLAG_MARK, options.encode())
    return body, etags.content_etag(body)


@router.get("/audit", include_in_schema=False)
def audit_page(request: Request) -> Response:
    """Find an issue, read its timeline and photos, see whether its chain verifies."""
    body, etag = _page((AUDIT_DIR / "index.html").stat().st_mtime_ns)
    headers = {
        "Cache-Control": "no-cache",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP,
        "Referrer-Policy": "no-referrer",
    }
    cached = etags.not_modified(request, etag, headers)
    return cached or Response(body, media_type="text/html; charset=utf-8", headers=headers)
