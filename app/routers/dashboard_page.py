"""The dashboard page (/dashboard): static HTML, a JS module and CSS; no build step."""

from pathlib import Path

from fastapi import APIRouter, Request, Response

from app import etags

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "web" / "dashboard"

router = APIRouter(tags=["pages"])


@router.get("/dashboard", include_in_schema=False)
def dashboard(request: Request) -> Response:
    """The command centre's wall screen: polls the API with If-None-Match."""
    page = DASHBOARD_DIR / "index.html"
    etag, headers = etags.file_etag(page), {"Cache-Control": "no-cache"}
    return etags.not_modified(request, etag, headers) or etags.send_file(
        page, etag, "text/html; charset=utf-8", headers
    )
