"""The auditor's page (/audit) in a real Chromium against the real server: it finds an issue by
code, shows its timeline and photos, says the chain verifies, and says it is broken once one
event row is changed in the database (issue 16 item 3)."""

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.e2e.browser import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402
from sqlalchemy import update  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from app.models import IssueEvent  # noqa: E402
from tests import factories  # noqa: E402
from tests.e2e.conftest import LiveServer  # noqa: E402

DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 900}, "locale": "zh-CN"}
TABLET: dict[str, Any] = {"viewport": {"width": 820, "height": 1180}, "locale": "zh-CN"}


def reported_and_dispatched(server: LiveServer) -> dict[str, Any]:
    """An issue with a before-photo without GPS (so flagged no_gps), dispatched to office A."""
    photo = factories.jpeg(lat=None, lon=None, seed=41)
    with server.api("grid_worker") as client:
        issue = factories.report(client, server.zone, photos=[photo], lat="34.75", lon="113.78")
        assert issue.status_code == 201, issue.text
        issue = issue.json()
    with server.api("d_super") as client:
        done = factories.act(client, server.zone, "d_super", issue, "dispatch", org_unit="A")
        assert done.status_code == 200, done.text
        return dict(done.json())


def open_page(browser: Any, server: LiveServer, device: dict[str, Any]) -> tuple[Any, Page, list]:
    context = browser.new_context(base_url=server.url, **device)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    hosts: list[str] = []
    requests: list[Any] = []
    # Every request must stay on the service (downloads are blob: URLs of what the API sent).
    page.on("request", lambda request: hosts.append(urlparse(request.url).hostname or "blob"))
    page.on("request", lambda request: requests.append(request))
    page.goto("/audit")
    page.get_by_label("用户名").fill("auditor")
    page.get_by_label("密码").fill(factories.PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#who")).to_contain_text("auditor")
    return context, page, [errors, hosts, requests]


def find(page: Page, code: str) -> None:
    page.get_by_label("编号或文字").fill(code)
    page.get_by_role("button", name="查找").click()
    expect(page.locator("#d-code")).to_have_text(code)


def test_finds_an_issue_by_code_and_shows_the_chain_valid_then_broken(
    browser: Any, live_server: LiveServer
) -> None:
    issue = reported_and_dispatched(live_server)
    context, page, (errors, hosts, requests) = open_page(browser, live_server, DESKTOP)
    try:
        find(page, issue["code"])
        verdict = page.locator("#verdict")
        expect(verdict).to_have_attribute("data-state", "valid")
        expect(verdict).to_contain_text("验证通过")
        # The timeline: every event with who, when and its chain hash.
        with live_server.session() as session:
            query = select(IssueEvent).where(IssueEvent.issue_id == issue["id"])
            events = list(session.exec(query.order_by(col(IssueEvent.seq))))
        rows = page.locator("#timeline tr")
        expect(rows).to_have_count(len(events))
        for row, event in zip(rows.all(), events, strict=True):
            expect(row.locator(".hash")).to_have_text(event.hash)
            expect(row).to_contain_text(event.actor)
        # The before-photo: its thumbnail, its flag as a Chinese sentence, its SHA-256.
        photo = issue["photos"][0]
        figure = page.locator(f"#p-before [data-photo='{photo['id']}']")
        expect(figure.locator("[data-flag='no_gps']")).to_have_text("照片没有拍摄位置（无 GPS）")
        expect(figure.locator(".sha")).to_contain_text(photo["sha256"])
        page.wait_for_function(
            'document.querySelector("#p-before img").naturalWidth > 0', timeout=15_000
        )
        # Shown from its signed link, fetched by the browser itself with no token at all.
        src = figure.locator("img").get_attribute("src")
        assert src == photo["urls"]["thumb_signed"], src
        [fetched] = [r for r in requests if urlparse(r.url).path.startswith("/media/photos/")]
        assert fetched.url == live_server.url + src and fetched.resource_type == "image"
        assert "authorization" not in fetched.all_headers()
        assert fetched.response().status == 200
        assert fetched.response().headers["content-type"] == "image/jpeg"
        assert not [r.url for r in requests if "/api/v1/photos/" in r.url]  # no blob fetches

        # One event row changed in the database: the page says the chain is broken.
        with live_server.session() as session:
            session.execute(
                update(IssueEvent)
                .where(col(IssueEvent.id) == events[0].id)
                .values(note="事后改写的备注")
            )
            session.commit()
        find(page, issue["code"])
        page.locator(f"#results tr[data-issue='{issue['id']}']").click()
        expect(verdict).to_have_attribute("data-state", "broken")
        expect(verdict).to_contain_text("哈希链已断裂")
        expect(page.locator("#problems")).to_contain_text("event 1")
        assert not errors, errors
        assert set(hosts) == {"127.0.0.1"}, hosts
    finally:
        context.close()


def test_usable_on_a_tablet_and_closed_to_roles_without_evidence(
    browser: Any, live_server: LiveServer
) -> None:
    issue = reported_and_dispatched(live_server)
    context, page, (errors, _hosts, _requests) = open_page(browser, live_server, TABLET)
    try:
        find(page, issue["code"])
        expect(page.locator("#verdict")).to_have_attribute("data-state", "valid")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= TABLET["viewport"]["width"], width  # nothing wider than the screen
        with page.expect_download() as download:
            page.get_by_role("button", name="下载证据包 (ZIP)").click()
        assert download.value.suggested_filename == f"{issue['code']}-evidence.zip"
        with page.expect_download() as download:
            page.get_by_role("button", name="下载台账记录 (CSV)").click()
        assert download.value.suggested_filename == f"{issue['code']}-ledger.csv"
        ledger = Path(download.value.path()).read_text(encoding="utf-8-sig")
        assert issue["code"] in ledger
        assert page.locator("#search-error").text_content() == ""
        assert not errors, errors
    finally:
        context.close()
    # Office B's supervisor may read evidence, but not of office A's issue: not found.
    context = browser.new_context(base_url=live_server.url, **DESKTOP)
    try:
        page = context.new_page()
        page.goto("/audit")
        page.get_by_label("用户名").fill("b_super")
        page.get_by_label("密码").fill(factories.PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page.locator("#who")).to_contain_text("b_super")
        page.get_by_label("编号或文字").fill(issue["code"])
        page.get_by_role("button", name="查找").click()
        expect(page.locator("#results")).to_contain_text("没有符合条件的问题")
        expect(page.locator("#detail")).to_be_hidden()
    finally:
        context.close()


def test_the_phone_sends_an_auditor_to_the_audit_page(page: Page, live_server: LiveServer) -> None:
    page.goto("/m/")
    page.get_by_label("用户名").fill("auditor")
    page.get_by_label("密码").fill(factories.PASSWORD)
    page.get_by_role("button", name="登录").click()
    link = page.get_by_role("link", name="打开审计查证页 /audit")
    expect(link).to_have_attribute("href", "/audit")
    link.click()
    expect(page).to_have_url(f"{live_server.url}/audit")
    expect(page.get_by_role("heading", name="登录审计查证")).to_be_visible()
