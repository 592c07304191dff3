"""The phone app end to end: a real Chromium, the real server, a phone in 经开区."""

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.browser import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402
from sqlmodel import select  # noqa: E402

from app.models import Issue  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from tests import factories  # noqa: E402
from tests.e2e.conftest import PHONE_POSITION, LiveServer  # noqa: E402
from tests.e2e.helpers import (  # noqa: E402
    PhotoFile,
    controls_without_names,
    fill_report,
    idb_outbox,
    outbox_items,
    real_photo,
    sign_in,
    unique,
    wait_located,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _by_description(server: LiveServer, description: str) -> list[dict[str, Any]]:
    return [i for i in server.issues(q=description) if i["description"] == description]


def test_sign_in_and_report_with_a_photo(page: Page, live_server: LiveServer) -> None:
    photo = real_photo()
    description = unique("电线杆小广告")
    sign_in(page, "grid_worker")
    fill_report(page, "非法小广告", description, [photo.payload()], quantity="3")
    wait_located(page)
    camera = page.get_by_label("照片", exact=True)
    assert camera.evaluate("el => [el.accept, el.getAttribute('capture'), el.multiple]") == [
        "image/*",
        "environment",
        True,
    ]
    expect(page.get_by_role("img", name="新照片 1")).to_be_visible()
    assert controls_without_names(page) == []
    assert not _overflows(page), "the report screen is wider than the phone"
    page.get_by_role("button", name="提交").click()

    done = outbox_items(page).filter(has_text="已上报")
    expect(done).to_have_count(1)
    code = re.search(r"JK-\d{8}-\d{4}", done.inner_text())
    assert code, done.inner_text()

    [issue] = _by_description(live_server, description)
    assert issue["code"] == code.group(0)
    assert issue["category"] == "flyposter"
    assert issue["status"] == "reported"
    # The phone's position, not the photo's EXIF GPS (which is in Italy).
    assert issue["location_source"] == "device"
    assert issue["lat"] == pytest.approx(PHONE_POSITION["latitude"], abs=1e-6)
    assert issue["lon"] == pytest.approx(PHONE_POSITION["longitude"], abs=1e-6)
    assert issue["accuracy_m"] == pytest.approx(PHONE_POSITION["accuracy"])
    assert issue["quantity"] == 3
    # The original file, byte for byte: never re-encoded in the page.
    [stored] = issue["photos"]
    assert stored["bytes"] == len(photo.data)
    assert stored["sha256"] == photo.sha256


def test_upload_shows_real_progress(page: Page, phone: Any, live_server: LiveServer) -> None:
    photo = real_photo()
    description = unique("进度")
    sign_in(page, "grid_worker")
    fill_report(page, "暴露垃圾", description, [photo.payload()])
    wait_located(page)
    cdp = phone.new_cdp_session(page)
    cdp.send("Network.enable")
    # A weak uplink (about 400 kbit/s): the bytes-sent counter must move before the answer.
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 100, "downloadThroughput": -1, "uploadThroughput": 50_000},
    )
    page.get_by_role("button", name="提交").click()
    counter = page.locator("[data-progress]")
    expect(counter).to_contain_text(re.compile(r"已发送 \d+ KB / 1\d\d KB"))
    assert 0 < page.locator("progress").evaluate("p => p.value") < len(photo.data)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    expect(outbox_items(page).filter(has_text="已上报")).to_have_count(1)
    assert len(_by_description(live_server, description)) == 1


def test_offline_report_waits_in_the_outbox_and_arrives_once(
    page: Page, phone: Any, live_server: LiveServer
) -> None:
    photo = real_photo()
    description = unique("离线上报")
    sign_in(page, "grid_worker")
    fill_report(page, "占道经营", description, [photo.payload()])
    wait_located(page)
    phone.set_offline(True)
    page.get_by_role("button", name="提交").click()

    item = outbox_items(page).first
    expect(item).to_contain_text("排队中")
    expect(item).to_contain_text("1 张照片")
    expect(page.get_by_text("当前离线，联网后自动上传")).to_be_visible()
    expect(page.locator("#outbox-badge")).to_have_text("1")
    [stored] = idb_outbox(page)
    assert stored["state"] == "queued"
    assert stored["files"] == [{"name": photo.name, "size": len(photo.data)}]
    assert re.fullmatch(r"[0-9a-f-]{36}", stored["idempotency_key"])
    assert _by_description(live_server, description) == []

    # The page reopens from the service worker while offline, with the item still there.
    page.reload()
    expect(outbox_items(page).first).to_contain_text("排队中")

    phone.set_offline(False)  # the `online` event sends it
    expect(outbox_items(page).filter(has_text="已上报")).to_have_count(1)
    assert len(_by_description(live_server, description)) == 1
    expect(page.locator("#outbox-badge")).to_be_hidden()


def test_a_lost_answer_is_retried_without_a_second_issue(
    page: Page, live_server: LiveServer
) -> None:
    """The server creates the issue but the phone never hears back; the retry replays."""
    photo = real_photo()
    description = unique("回复丢失")
    sign_in(page, "grid_worker")
    lost: list[int] = []

    def lose_the_answer(route: Any) -> None:
        if not lost:
            response = route.fetch()  # reaches the server, which creates the issue
            lost.append(response.status)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/issues", lose_the_answer)
    fill_report(page, "墙体广告", description, [photo.payload()])
    wait_located(page)
    page.get_by_role("button", name="提交").click()
    item = outbox_items(page).first
    expect(item).to_contain_text("等待重试")
    assert lost == [201]
    assert len(_by_description(live_server, description)) == 1

    item.get_by_role("button", name="立即重试").click()
    expect(item).to_contain_text("已上报")
    [issue] = _by_description(live_server, description)
    assert issue["code"] in item.inner_text()


def test_a_refused_photo_fails_with_the_reason_and_stays(
    page: Page, live_server: LiveServer
) -> None:
    not_an_image = PhotoFile("photo.jpg", b"this is not an image, whatever its name says" * 20)
    too_large = PhotoFile("big.jpg", b"\xff\xd8\xff\xe0" + bytes(1024 * 1024 + 10))
    sign_in(page, "grid_worker")
    for name, photo in (("不是照片", not_an_image), ("太大", too_large)):
        fill_report(page, "其他", unique(name), [photo.payload()])
        page.get_by_role("button", name="提交").click()
        expect(outbox_items(page).first).to_contain_text("失败")

    items = outbox_items(page)
    expect(items.filter(has_text="照片过大 (最大 1 MB)")).to_have_count(1)
    expect(items.filter(has_text="不是可接受的照片格式")).to_have_count(1)
    page.reload()  # kept on the phone until the user removes them
    expect(items).to_have_count(2)
    assert {i["state"] for i in idb_outbox(page)} == {"failed"}
    assert {i["error"]["status"] for i in idb_outbox(page)} == {413, 415}
    assert controls_without_names(page) == []
    assert not _overflows(page)

    for _ in range(2):
        items.first.get_by_role("button", name=re.compile("^删除这一项")).click()
        page.get_by_role("alertdialog").get_by_role("button", name="删除", exact=True).click()
    expect(items).to_have_count(0)
    expect(page.get_by_text("没有待传的内容")).to_be_visible()
    _wait_outbox_empty(page)  # for good once the undo window has passed


def _wait_outbox_empty(page: Page) -> None:
    """IndexedDB's outbox empties (removal is final once the undo window has passed)."""
    for _ in range(100):
        if idb_outbox(page) == []:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"still in the outbox: {idb_outbox(page)}")


def test_removing_an_unsent_item_asks_first_and_can_be_undone(page: Page, phone: Any) -> None:
    photo = real_photo()
    sign_in(page, "grid_worker")
    fill_report(page, "其他", unique("删除确认"), [photo.payload()])
    phone.set_offline(True)
    page.get_by_role("button", name="提交").click()
    item = outbox_items(page).first
    expect(item).to_contain_text("排队中")
    remove = item.get_by_role("button", name=re.compile("^删除这一项"))

    # Asked in the app's own words (no window.confirm); 取消 and Escape keep the item.
    page.on("dialog", lambda d: pytest.fail(f"a browser dialog appeared: {d.message}"))
    remove.click()
    sheet = page.get_by_role("alertdialog", name="删除这一项？")
    expect(sheet).to_contain_text("还没有上传")
    expect(sheet.get_by_role("button", name="取消")).to_be_focused()
    sheet.get_by_role("button", name="取消").click()
    expect(sheet).to_have_count(0)
    remove.click()
    page.keyboard.press("Escape")
    expect(sheet).to_have_count(0)
    expect(outbox_items(page)).to_have_count(1)
    assert len(idb_outbox(page)) == 1

    # Removed: gone from the list, its photos still on the phone until the undo window ends.
    remove.click()
    sheet.get_by_role("button", name="删除", exact=True).click()
    expect(outbox_items(page)).to_have_count(0)
    [kept] = idb_outbox(page)
    assert kept["files"] == [{"name": photo.name, "size": len(photo.data)}]
    assert kept["removed_at"]
    page.locator("#toast").get_by_role("button", name="撤销").click()
    expect(outbox_items(page).first).to_contain_text("排队中")
    [back] = idb_outbox(page)
    assert "removed_at" not in back
    assert back["files"] == kept["files"]

    # Removed without undo: after the window it is deleted for good, photos and all.
    outbox_items(page).first.get_by_role("button", name=re.compile("^删除这一项")).click()
    sheet.get_by_role("button", name="删除", exact=True).click()
    expect(outbox_items(page)).to_have_count(0)
    _wait_outbox_empty(page)
    phone.set_offline(False)


def test_the_outbox_is_sent_on_the_next_start(page: Page, phone: Any, live_server: LiveServer):
    description = unique("下次启动")
    sign_in(page, "grid_worker")
    fill_report(page, "散煤", description, [real_photo().payload()])
    phone.set_offline(True)
    page.get_by_role("button", name="提交").click()
    expect(outbox_items(page).first).to_contain_text("排队中")
    page.close()

    phone.set_offline(False)
    later = phone.new_page()
    later.goto("/m/#/outbox")
    expect(outbox_items(later).first).to_contain_text("已上报")
    assert len(_by_description(live_server, description)) == 1


def test_an_expired_token_asks_to_sign_in_and_keeps_the_outbox(
    page: Page, phone: Any, live_server: LiveServer
) -> None:
    description = unique("登录过期")
    sign_in(page, "grid_worker")
    fill_report(page, "道路破损", description, [real_photo().payload()])
    phone.set_offline(True)
    page.get_by_role("button", name="提交").click()
    expect(outbox_items(page).first).to_contain_text("排队中")

    token = page.evaluate("() => JSON.parse(localStorage.getItem('gp.token'))")
    with live_server.api("grid_worker") as client:
        client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    phone.set_offline(False)

    expect(page.get_by_text("登录已过期")).to_be_visible()
    expect(page.get_by_label("用户名")).to_have_value("grid_worker")
    assert [i["state"] for i in idb_outbox(page)] == ["queued"]
    assert _by_description(live_server, description) == []

    page.get_by_label("密码").fill(factories.PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.get_by_role("link", name=re.compile("待传")).click()
    expect(outbox_items(page).first).to_contain_text("已上报")
    assert len(_by_description(live_server, description)) == 1


def test_sign_out_clears_the_token_and_keeps_no_credentials(page: Page, phone: Any) -> None:
    sign_in(page, "grid_worker")
    fill_report(page, "其他", unique("退出"), [real_photo().payload()])
    phone.set_offline(True)
    page.get_by_role("button", name="提交").click()
    expect(outbox_items(page).first).to_contain_text("排队中")
    token = page.evaluate("() => JSON.parse(localStorage.getItem('gp.token'))")

    page.get_by_role("button", name="退出登录").click()
    expect(page.get_by_role("button", name="登录")).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('gp.token')") is None
    stored = idb_outbox(page)
    assert token not in str(stored)
    assert stored[0]["owner"] == "grid_worker"


def test_denied_location_is_said_and_the_photo_exif_locates(
    browser: Any, live_server: LiveServer
) -> None:
    from tests.e2e.conftest import PHONE

    photo = real_photo()
    description = unique("无定位")
    context = browser.new_context(base_url=live_server.url, **(PHONE | {"permissions": []}))
    try:
        page = context.new_page()
        sign_in(page, "grid_worker")
        fill_report(page, "违规横幅", description, [photo.payload()])
        expect(page.get_by_text("未获得定位权限。将使用照片自带的 GPS 位置")).to_be_visible()
        page.get_by_role("button", name="提交").click()
        expect(outbox_items(page).filter(has_text="已上报")).to_have_count(1)
    finally:
        context.close()
    [issue] = _by_description(live_server, description)
    assert issue["location_source"] == "exif"
    assert issue["lat"] == pytest.approx(45.5, abs=0.05)  # where the photo was taken


def _overflows(page: Page) -> bool:
    """Wider than the 360 px phone (a mobile browser zooms out, so innerWidth would hide it)."""
    right: float = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('main *')]"
        ".map((el) => el.getBoundingClientRect().right))"
    )
    return right > 360.5


def test_english_switch(page: Page) -> None:
    page.goto("/m/")
    page.get_by_role("button", name="Switch to English").click()
    expect(page.get_by_label("Username")).to_be_visible()
    page.get_by_label("Username").fill("grid_worker")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("radio", name="Flyposters and illegal small ads")).to_be_attached()
    expect(page.get_by_role("button", name="Submit")).to_be_visible()
    assert not _overflows(page), "the report screen is wider than the phone"
    page.get_by_role("button", name="切换到中文").click()
    expect(page.get_by_role("button", name="提交")).to_be_visible()


def test_opens_offline_after_the_first_load(page: Page, phone: Any) -> None:
    sign_in(page, "grid_worker")
    expect(page.locator("body[data-ready=report]")).to_be_attached()
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    phone.set_offline(True)
    fresh = phone.new_page()
    fresh.goto("/m/")
    expect(fresh.locator("body[data-ready=report]")).to_be_attached()
    expect(fresh.get_by_role("radio", name="非法小广告")).to_be_attached()
    expect(fresh.get_by_label("照片", exact=True)).to_be_attached()
    expect(fresh.get_by_role("button", name="提交")).to_be_visible()
    fresh.close()


# --- Tasks and supervisors ---------------------------------------------------------------------


def _report_by_api(
    server: LiveServer, description: str, username: str = "grid_worker"
) -> dict[str, Any]:
    with server.api(username) as client:
        response = client.post(
            "/api/v1/issues",
            data={
                "category": "garbage",
                "description": description,
                "lat": factories.LAT,  # where factories.jpeg() says the photos were taken
                "lon": factories.LON,
            },
            files=factories.files("photos", factories.jpeg(seed=3)),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def _dispatch_by_api(server: LiveServer, issue: dict[str, Any]) -> dict[str, Any]:
    with server.api("d_super") as client:
        response = client.post(
            f"/api/v1/issues/{issue['id']}/transitions",
            json={"action": "dispatch", "org_unit": "A"},
            headers={"If-Match": f'"{issue["version"]}"'},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def _queue(page: Page, title: str) -> Any:
    """One of the supervisor's queues (待受理, 待验收), found by its heading."""
    return page.locator("section.queue", has=page.get_by_role("heading", name=re.compile(title)))


def _action_buttons(page: Page) -> set[str]:
    return set(page.locator("[data-action]").evaluate_all("els => els.map(e => e.dataset.action)"))


def test_tasks_put_overdue_first_with_a_countdown(page: Page, live_server: LiveServer) -> None:
    due = _dispatch_by_api(live_server, _report_by_api(live_server, unique("按期")))
    late = _dispatch_by_api(live_server, _report_by_api(live_server, unique("超期")))
    with live_server.session() as session:
        row = session.exec(select(Issue).where(Issue.id == late["id"])).one()
        row.deadline_at = utcnow() - timedelta(hours=5)
        session.add(row)
        session.commit()

    sign_in(page, "a_worker")
    page.get_by_role("link", name="任务").click()
    cards = page.locator("ul.tasks > li")
    expect(cards.first).to_contain_text(late["code"])
    expect(cards.first).to_contain_text("已超期 5小时")
    expect(cards.filter(has_text=due["code"])).to_contain_text(re.compile(r"剩余 (1天|23小时)"))
    assert controls_without_names(page) == []
    assert not _overflows(page)


def test_supervisor_dispatches_worker_rectifies_supervisor_verifies(
    browser: Any, page: Page, live_server: LiveServer
) -> None:
    from tests.e2e.conftest import PHONE

    issue = _report_by_api(live_server, unique("派遣验收"))

    # The district supervisor accepts and dispatches from the review queue.
    sign_in(page, "d_super")
    page.get_by_role("searchbox", name="搜索").fill(issue["code"])  # among a few hundred
    _queue(page, "待受理").get_by_role("link", name=re.compile(issue["code"])).click()
    expect(page.get_by_role("heading", name=re.compile(issue["code"]))).to_be_visible()
    assert _action_buttons(page) <= set(live_server.issue(issue["id"])["allowed_actions"])
    assert {"dispatch", "accept", "reject"} <= _action_buttons(page)
    assert controls_without_names(page) == []
    assert not _overflows(page)
    page.get_by_label("派往单位").select_option("A")
    deadline = (datetime.now(SHANGHAI) + timedelta(days=30)).strftime("%Y-%m-%d")
    page.get_by_label("整改期限").fill(f"{deadline}T18:00")
    page.get_by_role("button", name="派遣").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    dispatched = live_server.issue(issue["id"])
    assert dispatched["status"] == "dispatched"
    assert dispatched["org_unit"] == "A"
    assert dispatched["deadline"].startswith(f"{deadline}T10:00")  # 18:00 in Shanghai

    # The office's worker takes an after-photo and submits; both go through the outbox.
    worker_phone = browser.new_context(base_url=live_server.url, **PHONE)
    try:
        worker = worker_phone.new_page()
        sign_in(worker, "a_worker")
        worker.get_by_role("link", name="任务").click()
        worker.get_by_role("link", name=re.compile(issue["code"])).click()
        expect(worker.get_by_role("heading", name="整改前")).to_be_visible()
        expect(worker.get_by_role("button", name="查看大图：整改前照片 1")).to_be_visible()
        assert _action_buttons(worker) == {"submit_rectification", "return", "request_extension"}
        assert controls_without_names(worker) == []
        after = PhotoFile("after.jpg", factories.fresh_jpeg())
        worker.get_by_label("整改后照片").set_input_files([after.payload()])
        worker.get_by_role("button", name="提交整改").click()
        expect(outbox_items(worker).filter(has_text="已完成")).to_have_count(2)
    finally:
        worker_phone.close()
    rectified = live_server.issue(issue["id"])
    assert rectified["status"] == "rectified"
    [after_photo] = [p for p in rectified["photos"] if p["kind"] == "after"]
    assert after_photo["sha256"] == after.sha256

    # Back on the supervisor's phone: before and after side by side, fail needs a note, pass.
    page.get_by_role("button", name="刷新").click()
    _queue(page, "待验收").get_by_role("link", name=re.compile(issue["code"])).click()
    compare = page.locator("section.photos.compare")
    expect(compare.get_by_role("heading", name="整改前")).to_be_visible()
    expect(compare.get_by_role("heading", name="整改后")).to_be_visible()
    expect(compare.locator("img")).to_have_count(2)
    assert _action_buttons(page) == {"verify_pass", "verify_fail"}
    page.get_by_role("button", name="验收不通过").click()
    expect(page.get_by_role("alert").filter(has_text="备注")).to_be_visible()
    assert live_server.issue(issue["id"])["status"] == "rectified"
    page.get_by_role("button", name="验收通过").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    closed = live_server.issue(issue["id"])
    assert closed["status"] == "closed"
    assert closed["verified_by"] == "d_super"


def test_verify_fail_with_a_note_sends_it_back(page: Page, live_server: LiveServer) -> None:
    with live_server.api("a_worker") as client:
        issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("返工")))
        response = client.post(
            f"/api/v1/issues/{issue['id']}/photos",
            data={"kind": "after"},
            files=factories.files("files", factories.jpeg(seed=5)),
        )
        assert response.status_code == 201
        current = client.get(f"/api/v1/issues/{issue['id']}").json()
        response = client.post(
            f"/api/v1/issues/{issue['id']}/transitions",
            json={"action": "submit_rectification"},
            headers={"If-Match": f'"{current["version"]}"'},
        )
        assert response.status_code == 200, response.text
    sign_in(page, "a_super")
    page.goto(f"/m/#/issue/{issue['id']}")
    page.get_by_label("备注").fill("墙面仍有残留")
    page.get_by_role("button", name="验收不通过").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    failed = live_server.issue(issue["id"])
    assert failed["status"] == "dispatched"
    assert failed["rework_count"] == 1
