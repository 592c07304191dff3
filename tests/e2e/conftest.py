"""The phone app in a real headless Chromium, driven by Playwright, against the real server.

One server per test process (uvicorn in a thread, SQLite and a temp upload folder) and one
browser; every test gets a fresh phone-sized browser context (its own storage, outbox and
service worker) and makes its own issues, so tests do not depend on each other.

Chromium is found at GRIDPROOF_CHROMIUM, else on PATH (Debian's `chromium`). Where none can
be found the browser tests are skipped with the reason; GRIDPROOF_REQUIRE_BROWSER=1 (set by
.ci/run) turns that skip into a failure.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from app.config import Settings
from app.db import get_engine, migrate
from tests import factories
from tests.e2e.browser import find_chromium, no_browser
from tests.servers import serve_in_thread

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The phone stands in 经开区, Zhengzhou (34.75 N, 113.78 E), with a 12 m GPS fix.
PHONE_POSITION = {"latitude": 34.7521, "longitude": 113.7834, "accuracy": 12}
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 640},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "zh-CN",
    "timezone_id": "Asia/Shanghai",
    "geolocation": PHONE_POSITION,
    "permissions": ["geolocation"],
}
MAX_UPLOAD_MB = 1  # small, so that "photo too large" is quick to provoke


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("Playwright for Python is not installed (pip install -e '.[test]')")
    executable = find_chromium()
    if executable is None:
        no_browser(
            "no Chromium found (apt-get install chromium, or set GRIDPROOF_CHROMIUM); "
            "scripts/test installs it when run as root"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class LiveServer:
    url: str
    settings: Settings
    zone: factories.Zone

    def api(self, username: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.zone.headers(username), timeout=30)

    def issues(self, username: str = "d_super", **params: Any) -> list[dict[str, Any]]:
        with self.api(username) as client:
            response = client.get("/api/v1/issues", params={"limit": 200, **params})
            response.raise_for_status()
            items: list[dict[str, Any]] = response.json()["items"]
            return items

    def issue(self, issue_id: int, username: str = "d_super") -> dict[str, Any]:
        with self.api(username) as client:
            response = client.get(f"/api/v1/issues/{issue_id}")
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

    def session(self) -> Session:
        return Session(get_engine(self.settings.database_url), expire_on_commit=False)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app on a free port: SQLite, a temp upload folder, the test zone's users."""
    root = tmp_path_factory.mktemp("phone")
    settings = Settings(
        database_url=f"sqlite:///{root / 'gp.db'}",
        upload_dir=root / "uploads",
        max_upload_mb=MAX_UPLOAD_MB,
    )
    migrate(settings.database_url)
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        zone = factories.make_zone(session)
    server, thread, port = serve_in_thread(settings)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, zone)
    server.should_exit = True
    thread.join(timeout=10)
    get_engine(settings.database_url).dispose()


@pytest.fixture
def phone(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh phone: 360×640, touch, Chinese, location granted near 34.75 N 113.78 E."""
    context = browser.new_context(base_url=live_server.url, **PHONE)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(phone: Any) -> Any:
    page = phone.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"
