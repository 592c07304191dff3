"""The dashboard page (/dashboard): static HTML, a JS module and CSS; no build step.

The page is told which statuses count as open by the server (read off the state table), and
which raster tiles (if any) lie under the grid (the map_tile_* settings), in meta tags, so that
no copy of those rules lives in JavaScript.
"""

import html
import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from app import etags
from app.config import Settings
from app.deps import SettingsDep
from app.models.issue import IssueStatus
from app.security_headers import page_csp, template_origin
from app.services.issues import OPEN_STATUSES

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "web" / "dashboard"
OPEN_MARK = b'<meta name="gridproof-open-statuses" content="">'
TILES_MARK = b'<meta name="gridproof-map-tiles" content="">'

router = APIRouter(tags=["pages"])


def tiles_setting(settings: Settings) -> str:
    """The tile layer as the page reads it (JSON), or "" when there is none (the default)."""
    if not settings.map_tile_url:
        return ""
    layer = {
        "url": settings.map_tile_url.replace("{key}", settings.map_tile_key),
        "subdomains": settings.map_tile_subdomains,
        "attribution": settings.map_tile_attribution,
        "crs": settings.map_tile_crs,
    }
    return json.dumps(layer, ensure_ascii=False)


@lru_cache(maxsize=4)
def _page(mtime_ns: int, tiles: str) -> tuple[bytes, str]:
    """index.html with the open statuses and the tiles written in, and its ETag (read again
    when it changes)."""
    open_statuses = ",".join(s.value for s in IssueStatus if s in OPEN_STATUSES)
    marked = OPEN_MARK.replace(b'content=""', f'content="{open_statuses}"'.encode())
    tiles_marked = TILES_MARK.replace(b'content=""', f'content="{html.escape(tiles)}"'.encode())
    body = (DASHBOARD_DIR / "index.html").read_bytes()
    body = body.replace(OPEN_MARK, marked).replace(TILES_MARK, tiles_marked)
    return body, etags.content_etag(body)


@router.get("/dashboard", include_in_schema=False)
def dashboard(request: Request, settings: SettingsDep) -> Response:
    """The command centre's wall screen: polls the API with If-None-Match."""
    mtime = (DASHBOARD_DIR / "index.html").stat().st_mtime_ns
    body, etag = _page(mtime, tiles_setting(settings))
    tiles = template_origin(settings.map_tile_url)
    csp = page_csp(image_origins=(tiles,) if tiles else ())
    headers = {"Cache-Control": "no-cache", "ETag": etag, "Content-Security-Policy": csp}
    cached = etags.not_modified(request, etag, headers)
    return cached or Response(body, media_type="text/html; charset=utf-8", headers=headers)
