"""The /dashboard page in a real headless Chromium, against a server with the demo zone.

Skipped (with the reason) when Playwright or Chromium is missing, unless
GRIDPROOF_REQUIRE_BROWSER=1. GRIDPROOF_SCREENSHOT_DIR=docs/screenshots also saves the
screenshot the README shows.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import require_playwright
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
VIEWER = ("dapingmu", "gridproof")  # the demo's wall-screen account (viewer, whole district)

require_playwright()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn on a free port, serving the demo zone from a temp SQLite database."""
    tmp = tmp_path_factory.mktemp("dashboard")
    env = {
        **os.environ,
        "GRIDPROOF_DATABASE_URL": f"sqlite:///{tmp}/demo.db",
        "GRIDPROOF_UPLOAD_DIR": str(tmp / "uploads"),
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, "-m", "app", "demo"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    port = free_port()
    log = (tmp / "server.log").open("w")
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError((tmp / "server.log").read_text())
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


class _Api:
    """A small JSON client for checking what the page should show."""

    def __init__(self, base: str) -> None:
        self.base = base
        username, password = VIEWER
        login = self._call("/api/v1/auth/login", {"username": username, "password": password})
        self.token = login[1]["token"]

    def _call(self, path: str, body: object = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(self.base + path)
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        else:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {}

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self._call(path)


def test_the_dashboard_shows_counts_and_the_overdue_list_and_polls_with_304(
    server, browser, tmp_path
):
    api = _Api(server)
    statuses = {path: api.get(path)[0] for path in ("/api/v1/stats", "/api/v1/rankings")}
    overdue = api.get("/api/v1/issues?overdue=true&limit=200")[1]["items"]
    open_statuses = ("reported", "accepted", "dispatched", "rectified")
    geo = api.get("/api/v1/issues.geojson?" + "&".join(f"status={s}" for s in open_statuses))[1]
    assert overdue and geo["features"], "the demo zone has overdue and open issues"

    page = browser.new_page(viewport={"width": 1600, "height": 900}, locale="zh-CN")
    statuses_seen: list[int] = []
    urls_seen: list[str] = []
    page.on(
        "response",
        lambda r: statuses_seen.append(r.status) if "/api/v1/" in r.url else None,
    )
    page.on("request", lambda r: urls_seen.append(r.url))
    page.goto(f"{server}/dashboard?every=2")

    # Sign in with the form.
    page.fill("input[name=username]", VIEWER[0])
    page.fill("input[name=password]", VIEWER[1])
    page.click("dialog button[type=submit]")

    # Headline counts and the overdue list, most overdue first.
    page.wait_for_selector("#overdue li[data-code]")
    assert page.text_content("#kpi-overdue") == str(len(overdue))
    codes = page.eval_on_selector_all(
        "#overdue li[data-code]", "items => items.map(item => item.dataset.code)"
    )
    by_deadline = sorted(overdue, key=lambda i: i["deadline"])
    assert codes == [i["code"] for i in by_deadline][: len(codes)]
    # The list is read in the compact view (a seventh of the full answer's bytes).
    assert any(u.endswith("/api/v1/issues?overdue=true&limit=200&view=compact") for u in urls_seen)
    if statuses["/api/v1/stats"] == 404:
        assert page.text_content("#kpi-open") == str(len(geo["features"]))
        assert page.text_content("#kpi-total") == "—"
    else:
        assert page.text_content("#kpi-total") != "—"
    if statuses["/api/v1/rankings"] == 404:
        assert page.text_content("#ranking") == "—"
    else:
        page.wait_for_selector("#ranking tr td.rank")

    # The map (a base map, or the SVG scatter without one) and the before/after pairs.
    page.wait_for_selector("#map circle, #map .leaflet-interactive")
    page.wait_for_selector("#pairs .pair img")
    # Functions, not expressions: Playwright evaluates an expression with eval, which the
    # page's CSP refuses (script-src 'self').
    page.wait_for_function(
        "() => [...document.querySelectorAll('#pairs img')]"
        ".every(i => i.complete && i.naturalWidth)"
    )
    # Shown by their signed links (no token, no blob fetch): see test_media_links.py.
    sources = page.eval_on_selector_all("#pairs img", "images => images.map(i => i.src)")
    assert sources and all("/media/photos/" in src and "sig=" in src for src in sources), sources

    # A later poll revalidates: the server answers 304 and the page keeps what it shows.
    page.wait_for_function("() => Number(document.body.dataset.notModified) > 0", timeout=20_000)
    assert 304 in statuses_seen
    assert page.get_attribute("body", "data-state") == "live"
    assert page.text_content("#kpi-overdue") == str(len(overdue))

    time.sleep(1)  # let the map settle (base map or not) before the picture
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    page.close()
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("GRIDPROOF_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / "dashboard.png")


STATS = {
    "counts": {
        "total": 1234,
        "by_status": {"reported": 10, "dispatched": 30, "closed": 1100, "rejected": 94},
        "by_category": {"flyposter": 600},
        "by_org_unit": {"XY": 700},
    },
    "open": 40,
    "overdue": 7,
    "due_within_24h": 5,
    "quantities": [
        {"category": "bare_soil", "name": "黄土裸露", "unit": "m²", "quantity": 12000},
        {"category": "flyposter", "name": "非法小广告", "unit": "处", "quantity": 200},
    ],
    "indicators": {
        "closure_rate": 0.875,
        "on_time_closure_rate": 0.8,
        "on_time_rectification_rate": 0.9,
        "rework_rate": 0.05,
        "overdue_open": 7,
    },
    "score": 91.24,
    "grade": "A",
}
RANKINGS = {
    "items": [
        {"rank": n, "org_unit": code, "name": name, "score": score, "grade": grade, "flag": flag}
        for n, (code, name, score, grade, flag) in enumerate(
            [
                ("XY", "祥云办事处", 95.5, "A", "red"),
                ("JL", "九龙办事处", 80.0, "B", None),
                ("JH", "京航办事处", 62.0, "C", None),
                ("CH", "潮河办事处", 35.0, "E", "black"),
            ],
            start=1,
        )
    ]
}


def test_the_dashboard_shows_stats_and_rankings_of_the_contracts_shapes(server, browser):
    """/stats and /rankings answered in the shapes the other half of issue 4 serves."""
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/api/v1/stats", lambda route: route.fulfill(json=STATS))
    page.route("**/api/v1/rankings?period=week", lambda route: route.fulfill(json=RANKINGS))
    page.goto(f"{server}/dashboard?every=2&map=svg")
    page.fill("input[name=username]", VIEWER[0])
    page.fill("input[name=password]", VIEWER[1])
    page.click("dialog button[type=submit]")
    page.wait_for_selector("#ranking td.rank")
    assert page.text_content("#kpi-total") == "1,234"
    assert page.text_content("#kpi-open") == "40"
    assert page.text_content("#kpi-overdue") == "7"
    assert page.text_content("#kpi-due") == "5"
    assert page.text_content("#kpi-closure") == "87.5%"
    assert page.text_content("#kpi-rework") == "5.0%"
    assert page.text_content("#kpi-score") == "91.2"
    assert page.text_content("#kpi-grade") == "等级 A"
    assert page.locator("#ranking tr").count() == 4
    assert page.text_content("#ranking .flag.red") == "红旗"
    assert page.text_content("#ranking .flag.black") == "黑旗"
    assert "12,000" in page.text_content("#quantities")
    page.close()
    assert errors == []


def test_the_map_draws_the_grid_and_lists_points_outside_it_apart(server, browser):
    """The demo grid is the base layer (a path per cell), fitted to the zone; an issue reported
    in Paris is flagged outside the grid and listed beside the map, not drawn."""
    from tests.factories import jpeg

    api = _Api(server)
    cells = api.get("/api/v1/grid.geojson")[1]["features"]
    assert 100 <= sum(f["properties"]["level"] == "grid" for f in cells) <= 200
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login = page.request.post(
        f"{server}/api/v1/auth/login", data={"username": "wang", "password": "gridproof"}
    )
    reported = page.request.post(
        f"{server}/api/v1/issues",
        headers={"Authorization": f"Bearer {login.json()['token']}"},
        multipart={
            "category": "flyposter",
            "lat": "48.8566",
            "lon": "2.3522",
            "photos": {"name": "p.jpg", "mimeType": "image/jpeg", "buffer": jpeg(seed=4242)},
        },
    )
    assert reported.status == 201, reported.text()
    paris = reported.json()
    assert paris["outside_grid"] is True and paris["org_unit"] == "JKQ"

    page.goto(f"{server}/dashboard?every=2&map=svg")
    page.fill("input[name=username]", VIEWER[0])
    page.fill("input[name=password]", VIEWER[1])
    page.click("dialog button[type=submit]")
    page.wait_for_selector("#map path.cell")
    assert page.locator("#map path.cell").count() == len(cells)
    shaded = page.eval_on_selector_all(
        "#map path.cell.level-grid",
        "ps => ps.filter(p => p.getAttribute('fill').includes('250')).length",
    )
    assert shaded == sum(
        f["properties"]["level"] == "grid" and f["properties"]["open_issues"] > 0 for f in cells
    )
    assert shaded > 0
    title = page.text_content("#map path.cell.level-grid title")
    assert title and "网格" in title and "未结" in title
    # Every open issue inside the zone is drawn within the map; the Paris one is listed apart.
    page.wait_for_selector("#map-outliers:not([hidden])")
    assert paris["code"] in page.text_content("#map-outliers")
    box = page.eval_on_selector("#map svg", "s => s.viewBox.baseVal.width")
    xs = page.eval_on_selector_all(
        "#map .dot circle:not(.halo)", "cs => cs.map(c => Number(c.getAttribute('cx')))"
    )
    assert xs and all(0 <= x <= box for x in xs)
    assert errors == []
    page.close()
