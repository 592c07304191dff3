"""The dashboard's raster tiles are a setting, off by default: the page names none and fetches
nothing from outside; set, the page carries the template with its key."""

import html
import json
import re

from fastapi.testclient import TestClient

from app.main import create_app

TILES = re.compile(r'<meta name="gridproof-map-tiles" content="([^"]*)">')


def test_no_tiles_by_default(client):
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert TILES.search(page.text)[1] == ""


def test_a_tile_server_from_the_settings(settings):
    template = (
        "https://t{s}.tianditu.gov.cn/vec_w/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={key}"
    )
    configured = settings.model_copy(
        update={
            "map_tile_url": template,
            "map_tile_key": "k<1>",
            "map_tile_subdomains": "01234567",
            "map_tile_attribution": "天地图",
        }
    )
    with TestClient(create_app(configured)) as client:
        page = client.get("/dashboard")
    layer = json.loads(html.unescape(TILES.search(page.text)[1]))
    assert layer == {
        "url": template.replace("{key}", "k<1>"),
        "subdomains": "01234567",
        "attribution": "天地图",
        "crs": "wgs84",
    }
    assert "k<1>" not in page.text  # escaped inside the attribute
