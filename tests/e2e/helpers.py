"""What a grid worker does with the phone app, as plain functions over a Playwright page."""

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import FilePayload, Page, expect

from tests import factories

HTC_SAMPLE = factories.SAMPLES / "gps__htc_desire.jpg"


@dataclass(frozen=True)
class PhotoFile:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def payload(self, mime: str = "image/jpeg") -> FilePayload:
        return {"name": self.name, "mimeType": mime, "buffer": self.data}


def real_photo() -> PhotoFile:
    """A real phone JPEG whose EXIF GPS is in Italy, far from where the phone stands."""
    if HTC_SAMPLE.exists():
        return PhotoFile(HTC_SAMPLE.name, HTC_SAMPLE.read_bytes())
    return PhotoFile("generated.jpg", factories.jpeg(lat=45.5008, lon=9.1102, seed=7))


def unique(text: str) -> str:
    """A description no other test uses, to find this test's issues through the API."""
    return f"{text} {uuid.uuid4().hex[:8]}"


def sign_in(page: Page, username: str, password: str = factories.PASSWORD) -> None:
    page.goto("/m/")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()


def fill_report(
    page: Page, category: str, description: str, photos: list[FilePayload], quantity: str = ""
) -> None:
    page.goto("/m/#/report")
    expect(page.locator("body[data-ready=report]")).to_be_attached()
    page.get_by_role("radio", name=category).check()
    page.get_by_label("照片", exact=True).set_input_files(photos)
    page.get_by_label("描述").fill(description)
    if quantity:
        page.get_by_label("数量").fill(quantity)


def wait_located(page: Page) -> None:
    """The report screen shows the phone's fix with its accuracy in metres."""
    expect(page.get_by_text("精度 ±")).to_be_visible()


def outbox_items(page: Page) -> Any:
    return page.locator("ul.outbox > li")


def idb_outbox(page: Page) -> list[dict[str, Any]]:
    """The outbox as stored in IndexedDB, blobs described by their size."""
    raw = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const open = indexedDB.open("gridproof");
            open.onsuccess = () => {
              const req = open.result.transaction("outbox").objectStore("outbox").getAll();
              req.onsuccess = () => resolve(JSON.stringify(req.result.map((i) => ({
                ...i, files: (i.files || []).map((f) => ({name: f.name, size: f.blob.size})),
              }))));
              req.onerror = () => reject(req.error);
            };
            open.onerror = () => reject(open.error);
          })"""
    )
    items: list[dict[str, Any]] = json.loads(raw)
    return items


def controls_without_names(page: Page) -> list[str]:
    """Visible controls that have neither a label nor an aria-label (screen readers need one)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
              .filter((el) => {
                if (el.type === 'hidden') return false;
                const named = (el.getAttribute('aria-label') || '').trim()
                  || (el.getAttribute('aria-labelledby') || '').trim()
                  || (el.labels && [...el.labels].some((l) => l.textContent.trim()))
                  || (['BUTTON', 'A'].includes(el.tagName) && el.textContent.trim());
                return !named;
              })
              .map((el) => el.outerHTML.slice(0, 120))"""
    )
    return found


def file_of_bytes(path: Path) -> PhotoFile:
    return PhotoFile(path.name, path.read_bytes())
