"""/docs and /redoc in a real headless Chromium with no internet: every request that would
leave 127.0.0.1 is refused and recorded, and the pages must still draw the API."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import LiveServer


@pytest.fixture
def offline_page(
    browser: Any, live_server: LiveServer
) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page whose requests to any other host fail, as on an intranet; the list of them; and
    what the page's console reports as errors."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(20_000)
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_this_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page, elsewhere, errors
    context.close()


def test_swagger_ui_draws_every_operation_offline(offline_page):
    page, elsewhere, errors = offline_page
    page.goto("/docs")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/issues/{issue_id}/transitions" in p for p in paths), paths
    assert len(paths) >= 20
    assert elsewhere == []
    assert errors == []


def test_redoc_draws_the_api_offline(offline_page):
    page, elsewhere, errors = offline_page
    page.goto("/redoc")
    page.get_by_role("heading", name="Gridproof").first.wait_for()
    # Each operation's summary (FastAPI makes it from the function's name).
    page.get_by_text("Report Issue").first.wait_for(state="attached")
    page.get_by_text("Transition").first.wait_for(state="attached")
    assert elsewhere == []
    # Nothing refused: ReDoc's footer logo, which it would take from its CDN, is served here.
    assert errors == []
