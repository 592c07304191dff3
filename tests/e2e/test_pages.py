"""How /m/ is served (no browser needed): types, caching, the service worker, the budget."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.routers.pages import PHONE_DIR, phone_files

BUDGET_BYTES = 150 * 1024


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app with nothing behind it: static pages touch neither the database nor storage."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", upload_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        yield client


def test_root_redirects_to_the_phone_app(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/m/"
    assert client.get("/m", follow_redirects=False).headers["location"] == "/m/"


def test_the_shell_is_served_with_its_types(client: TestClient) -> None:
    expected = {
        "/m/": "text/html",
        "/m/app.js": "text/javascript",
        "/m/core.js": "text/javascript",
        "/m/app.css": "text/css",
        "/m/sw.js": "text/javascript",
        "/m/manifest.webmanifest": "application/manifest+json",
        "/m/icon.svg": "image/svg+xml",
    }
    for path, media_type in expected.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type), path
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in client.get("/m/").headers["content-security-policy"]


def test_unknown_files_are_problem_json_404(client: TestClient) -> None:
    for path in ("/m/nope.js", "/m/../app/main.py", "/m/%2e%2e/README.md"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


def test_files_revalidate_with_etag_and_come_gzipped(client: TestClient) -> None:
    for path in ("/m/core.js", "/m/sw.js", "/m/"):
        first = client.get(path, headers={"Accept-Encoding": "gzip"})
        assert first.headers["content-encoding"] == "gzip", path
        assert first.headers["cache-control"] == "no-cache", path
        again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304, path


def test_service_worker_is_versioned_and_scoped(client: TestClient) -> None:
    response = client.get("/m/sw.js")
    assert response.headers["service-worker-allowed"] == "/m/"
    version = re.search(r'const VERSION = "([0-9a-f]{16})"', response.text)
    assert version, "the server writes the shell's hash into sw.js"


def test_service_worker_caches_every_file_of_the_app() -> None:
    shell = re.findall(r'"(/m/[^"]*)"', (PHONE_DIR / "sw.js").read_text())
    for name in (p.relative_to(PHONE_DIR).as_posix() for p in phone_files()):
        if name in {"sw.js"}:
            continue
        expected = "/m/" if name == "index.html" else f"/m/{name}"
        assert expected in shell, f"{name} is missing from the service worker's SHELL"


def test_javascript_and_css_stay_within_budget() -> None:
    total = sum(p.stat().st_size for p in phone_files() if p.suffix in (".js", ".css"))
    assert total < BUDGET_BYTES, f"{total} bytes of JS+CSS; the budget is {BUDGET_BYTES}"


def test_the_dashboard_is_told_which_statuses_are_open(client: TestClient) -> None:
    """The page reads the open statuses from the server (its state table), not from a copy."""
    first = client.get("/dashboard")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
    marker = re.search(r'<meta name="gridproof-open-statuses" content="([a-z,]*)">', first.text)
    assert marker and marker.group(1).split(",") == [
        "reported",
        "accepted",
        "dispatched",
        "rectified",
    ]
    again = client.get("/dashboard", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
