"""Take the README's screenshots of the phone app: `python -m tests.e2e.screenshots [OUT_DIR]`.

Loads the demo zone into a temporary SQLite database, serves it, and photographs the main
screens in headless Chromium at a 360×640 phone viewport (device pixel ratio 2).
Chinese text needs a CJK font on the machine (Debian: fonts-wqy-microhei or fonts-noto-cjk).
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.e2e.browser import find_chromium
from tests.e2e.conftest import CHROMIUM_ARGS, PHONE
from tests.e2e.helpers import real_photo
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"
DEMO_PASSWORD = "gridproof"


def serve_demo(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "GRIDPROOF_DATABASE_URL": f"sqlite:///{workdir / 'gp.db'}",
        "GRIDPROOF_UPLOAD_DIR": str(workdir / "uploads"),
    }
    command = [sys.executable, "-m", "app"]
    subprocess.run([*command, "demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port)], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the demo server did not start")


def sign_in(page: Page, username: str) -> None:
    page.goto("/m/")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()


def shoot(page: Page, out: Path, name: str) -> None:
    time.sleep(0.6)  # thumbnails and the toast settle
    page.screenshot(path=str(out / f"{name}.png"))
    print(out / f"{name}.png")


def worker_screens(context: BrowserContext, out: Path) -> None:
    page = context.new_page()
    page.goto("/m/")
    page.get_by_label("用户名").fill("wang")
    shoot(page, out, "sign-in")
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("body[data-ready=report]")).to_be_attached()
    page.get_by_role("radio", name="暴露垃圾").check()
    page.get_by_label("照片", exact=True).set_input_files([real_photo().payload()] * 2)
    page.get_by_label("描述").fill("路口垃圾堆放，未清运")
    page.get_by_label("数量").fill("2")
    expect(page.get_by_text("精度 ±")).to_be_visible()
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    shoot(page, out, "report")
    photos = page.locator("section.group", has=page.get_by_role("heading", name="照片"))
    photos.evaluate("el => el.scrollIntoView({block: 'start'})")
    shoot(page, out, "report-photos")
    context.set_offline(True)
    page.get_by_role("button", name="提交").click()
    expect(page.locator("ul.outbox > li").first).to_contain_text("排队中")
    shoot(page, out, "outbox")
    page.locator("ul.outbox > li").first.get_by_role(
        "button", name=re.compile("^删除这一项")
    ).click()
    expect(page.get_by_role("alertdialog")).to_be_visible()
    shoot(page, out, "outbox-remove")
    page.get_by_role("alertdialog").get_by_role("button", name="取消").click()
    context.set_offline(False)
    expect(page.locator("ul.outbox > li").first).to_contain_text("已上报")
    page.locator("ul.outbox > li").first.get_by_role("link").click()
    expect(page.locator("ul.tasks > li").first).to_be_visible()
    shoot(page, out, "mine")
    page.goto("/m/#/report")
    expect(page.locator("body[data-ready=report]")).to_be_attached()
    page.get_by_role("radio", name="非法小广告").check()
    page.get_by_label("照片", exact=True).set_input_files([real_photo().payload()])
    page.get_by_label("立行立改（已当场整改）").check()
    page.get_by_label("整改后照片", exact=True).set_input_files([real_photo().payload()])
    spot = page.get_by_label("立行立改（已当场整改）")
    spot.evaluate("el => el.closest('section').scrollIntoView({block: 'start'})")
    shoot(page, out, "report-on-the-spot")
    page.close()


def rectifier_screens(context: BrowserContext, out: Path) -> None:
    page = context.new_page()
    sign_in(page, "xy_zhenggai")
    page.get_by_role("link", name="任务").click()
    expect(page.locator("ul.tasks > li").first).to_be_visible()
    expect(page.locator("ul.tasks > li .distance").first).to_contain_text("距你")
    shoot(page, out, "tasks")
    page.locator("ul.tasks > li a.task-link").first.click()
    where = page.locator("section.where")
    expect(where.locator("svg .cell").first).to_be_attached()
    expect(where).to_contain_text("距你")
    where.evaluate("el => window.scrollTo(0, el.getBoundingClientRect().top + scrollY - 64)")
    shoot(page, out, "task-where")
    page.close()


def supervisor_screens(context: BrowserContext, out: Path) -> None:
    page = context.new_page()
    sign_in(page, "xiangyun")
    expect(page.locator("section.queue").first).to_be_visible()
    shoot(page, out, "review")
    verify = page.locator(
        "section.queue", has=page.get_by_role("heading", name=re.compile("待验收"))
    )
    verify.get_by_role("link").first.click()
    expect(page.locator("section.photos.compare img")).to_have_count(2)
    page.locator("section.photos.compare").evaluate("el => el.scrollIntoView({block: 'start'})")
    shoot(page, out, "verify")
    page.close()


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.mkdir(parents=True, exist_ok=True)
    executable = find_chromium()
    if executable is None:
        print("no Chromium found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = serve_demo(Path(tmp), port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
                for screens in (worker_screens, rectifier_screens, supervisor_screens):
                    context = browser.new_context(base_url=f"http://127.0.0.1:{port}", **PHONE)
                    screens(context, out)
                    context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
