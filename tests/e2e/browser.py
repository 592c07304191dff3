"""Finding a browser for the end-to-end tests, and skipping (or failing) where there is none."""

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_BROWSER = os.environ.get("GRIDPROOF_REQUIRE_BROWSER") == "1"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """GRIDPROOF_CHROMIUM, else the first Chromium on PATH (Debian's package is `chromium`)."""
    configured = os.environ.get("GRIDPROOF_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def no_browser(reason: str, *, module: bool = False) -> None:
    """Skip with the reason; a failure instead where a browser is required (CI)."""
    if REQUIRE_BROWSER:
        pytest.fail(f"a browser is required here (GRIDPROOF_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason, allow_module_level=module)


def require_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        no_browser("Playwright for Python is not installed (pip install -e '.[test]')", module=True)
