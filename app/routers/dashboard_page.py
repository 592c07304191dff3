"""The dashboard page (/dashboard): static HTML, a JS module and CSS; no build step.

The page is told which statuses count as open by the server (read off the state table), in a
meta tag, so that no copy of that rule lives in JavaScript.
"""

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from app import etags
from app.models.issue import IssueStatus
from app.security_headers import page_csp
from app.services.issues import OPEN_STATUSES

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "web" / "dashboard"
OPEN_MARK = b'<meta name="gridproof-open-statuses" content="">'

router = APIRouter(tags=["pages"])


@lru_cache(maxsize=2)
def _page(mtime_ns: int) -> tuple[bytes, str]:
    """index.html with the open statuses written in, and its ETag (read again when it changes)."""
    open_statuses = ",".join(s.value for s in IssueStatus if s in OPEN_STATUSES)
    marked = OPEN_MARK.replace(b'content=""', f'content="{open_statuses}"'.encode())
    body = (DASHBOARD_DIR / "index.html").read_bytes().replace(OPEN_MARK, marked)
    return body, etags.content_etag(body)


@router.get("/dashboard", include_in_schema=False)
def dashboard(request: Request) -> Response:
    """The command centre's wall screen: polls the API with If-None-Match."""
    body, etag = _page((DASHBOARD_DIR / "index.html").stat().st_mtime_ns)
    headers = {"Cache-Control": "no-cache", "ETag": etag, "Content-Security-Policy": page_csp()}
    cached = etags.not_modified(request, etag, headers)
    return cached or Response(body, media_type="text/html; charset=utf-8", headers=headers)
