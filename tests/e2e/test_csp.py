"""Every page in a real headless Chromium under its Content-Security-Policy (issue 17,
item 6): it loads with no CSP violation and no error, and no request leaves 127.0.0.1;
pages, JSON, images and errors all carry the CSP, Referrer-Policy and nosniff."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import factories
from tests.e2e.conftest import LiveServer

# Recorded in the page from its first script on (Chromium also logs each to the console).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@dataclass
class Watched:
    page: Any
    elsewhere: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__violations")
        return found


@pytest.fixture
def watched(browser: Any, live_server: LiveServer) -> Iterator[Watched]:
    """A page whose requests to any other host are refused and recorded, with its console
    errors and its CSP violations."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(20_000)
    context.add_init_script(RECORD_VIOLATIONS)
    watched = Watched(context.new_page())

    def only_this_server(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watched.elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_this_server)
    watched.page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
    watched.page.on("pageerror", lambda e: watched.errors.append(str(e)))
    yield watched
    context.close()


def _assert_headers(headers: dict[str, str]) -> str:
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0], csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    return csp


def _pages(live_server: LiveServer) -> list[str]:
    pages = ["/m/", "/dashboard?every=30", "/docs", "/redoc"]
    if httpx.get(f"{live_server.url}/audit").status_code == 200:
        pages.append("/audit")
    return pages


def test_every_page_loads_with_no_csp_violation_and_nothing_from_elsewhere(
    watched: Watched, live_server: LiveServer
) -> None:
    page = watched.page
    for path in _pages(live_server):
        response = page.goto(path, wait_until="networkidle")
        assert response.status == 200, path
        _assert_headers(response.headers)
        assert watched.violations() == [], (path, watched.violations())
    assert watched.elsewhere == []
    assert watched.errors == []


def test_the_signed_in_dashboard_and_its_vendored_leaflet_keep_to_the_policy(
    watched: Watched, live_server: LiveServer
) -> None:
    page = watched.page
    token = live_server.zone.tokens["d_super"]
    with live_server.api("grid_worker") as client:
        assert factories.report(client, live_server.zone).status_code == 201
    page.goto(f"/dashboard?every=30#token={token}", wait_until="networkidle")
    page.wait_for_selector("body[data-state]:not([data-state=starting])")
    # Leaflet, as the map loads it when a tile layer is configured: from here, pinned.
    version = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const script = document.createElement("script");
            script.src = "/vendor/leaflet-1.9.4/leaflet.js";
            script.onload = () => resolve(window.L.version);
            script.onerror = () => reject(new Error("no Leaflet"));
            document.head.append(script);
        })"""
    )
    assert version == "1.9.4"
    assert watched.violations() == []
    assert watched.elsewhere == [] and watched.errors == []


def test_json_images_and_errors_carry_the_headers_too(live_server: LiveServer) -> None:
    with live_server.api("grid_worker") as client:
        created = factories.report(client, live_server.zone)
        assert created.status_code == 201
        _assert_headers(dict(created.headers))
        photo = created.json()["photos"][0]
        for url in photo["urls"].values():
            answer = client.get(url)
            assert answer.status_code == 200, url
            _assert_headers(dict(answer.headers))
    anonymous = httpx.get(f"{live_server.url}/api/v1/issues")
    assert anonymous.status_code == 401
    _assert_headers(dict(anonymous.headers))
    for path in ("/healthz", "/vendor/leaflet-1.9.4/leaflet.js", "/m/sw.js"):
        _assert_headers(dict(httpx.get(f"{live_server.url}{path}").headers))


def test_the_dashboards_sign_out_revokes_its_token(
    watched: Watched, live_server: LiveServer
) -> None:
    page = watched.page
    with httpx.Client(base_url=live_server.url) as client:
        login = {"username": "viewer", "password": factories.PASSWORD}
        token = client.post("/api/v1/auth/login", json=login).json()["token"]
        me = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/auth/me", headers=me).status_code == 200
        page.goto(f"/dashboard?every=30#token={token}", wait_until="networkidle")
        with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/logout")) as logout:
            page.click("#sign-out")
        assert logout.value.status == 204
        page.wait_for_selector("#sign-in[open]")
        assert page.evaluate("localStorage.getItem('gridproof.dashboard.token')") is None
        gone = client.get("/api/v1/auth/me", headers=me)
        assert gone.status_code == 401 and gone.json()["code"] == "unauthenticated"
    assert watched.violations() == [] and watched.errors == []
