"""The dashboard page (/dashboard): static HTML, a JS module and CSS; no build step."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "web" / "dashboard"

router = APIRouter(tags=["pages"])


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    """The command centre's wall screen: polls the API with If-None-Match."""
    return FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})
