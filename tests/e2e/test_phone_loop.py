"""Issue 14 on the phone: everyone in the field loop finishes their job in real Chromium
(phone viewport, position granted in 经开区)."""

import re

from tests.e2e.browser import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402

from tests import factories  # noqa: E402
from tests.e2e.conftest import LiveServer  # noqa: E402
from tests.e2e.helpers import (  # noqa: E402
    PhotoFile,
    controls_without_names,
    fill_report,
    outbox_items,
    sign_in,
    unique,
    wait_located,
)
from tests.e2e.test_phone import (  # noqa: E402
    _by_description,
    _overflows,
    _queue,
    _report_by_api,
)


def _photo() -> PhotoFile:
    return PhotoFile("scene.jpg", factories.fresh_jpeg())


def test_on_the_spot_report_carries_before_and_after_photos(
    page: Page, live_server: LiveServer
) -> None:
    """立行立改: one report with both kinds; it waits for someone else's verification."""
    before, after = _photo(), _photo()
    description = unique("立行立改")
    sign_in(page, "grid_worker")
    fill_report(page, "暴露垃圾", description, [before.payload()])
    wait_located(page)
    spot = page.get_by_label("立行立改（已当场整改）")
    after_input = page.get_by_label("整改后照片", exact=True)
    expect(page.get_by_role("button", name="拍整改后照片")).to_be_hidden()
    spot.check()
    page.get_by_role("button", name="提交").click()
    expect(page.get_by_role("alert")).to_have_text("请先上传整改后照片")
    after_input.set_input_files([after.payload()])
    expect(page.get_by_role("img", name="整改后新照片 1")).to_be_visible()
    assert controls_without_names(page) == []
    assert not _overflows(page)
    page.get_by_role("button", name="提交").click()
    done = outbox_items(page).filter(has_text="立行立改")
    expect(done).to_contain_text("已上报")

    [issue] = _by_description(live_server, description)
    assert issue["status"] == "rectified"
    kinds = {p["kind"]: p["sha256"] for p in issue["photos"]}
    assert kinds == {"before": before.sha256, "after": after.sha256}

    # Someone else verifies it: it is in the supervisor's 待验收 queue.
    page.get_by_role("button", name="退出登录").click()
    sign_in(page, "d_super")
    expect(
        _queue(page, "待验收").get_by_role("link", name=re.compile(issue["code"]))
    ).to_be_visible()


def test_more_before_photos_on_an_existing_issue(page: Page, live_server: LiveServer) -> None:
    issue = _report_by_api(live_server, unique("补充照片"))
    extra = _photo()
    sign_in(page, "grid_worker")
    page.goto(f"/m/#/issue/{issue['id']}")
    panel = page.locator("section.more-before")
    panel.get_by_role("button", name="上传补充照片").click()
    expect(panel.get_by_role("alert")).to_have_text("请至少拍一张照片")
    page.get_by_label("补充整改前照片", exact=True).set_input_files([extra.payload()])
    panel.get_by_role("button", name="上传补充照片").click()
    page.get_by_role("link", name=re.compile("待传")).click()
    expect(outbox_items(page).filter(has_text="照片已上传")).to_have_count(1)
    before = [
        p["sha256"] for p in live_server.issue(issue["id"])["photos"] if p["kind"] == "before"
    ]
    assert len(before) == 2 and before[1] == extra.sha256


def test_supervisor_marks_a_duplicate_chosen_from_nearby_issues(
    page: Page, live_server: LiveServer
) -> None:
    original = _report_by_api(live_server, unique("原问题"))
    repeat = _report_by_api(live_server, unique("重复上报"))
    sign_in(page, "d_super")
    page.goto(f"/m/#/issue/{repeat['id']}")
    panel = page.locator("section.duplicate")
    choices = panel.get_by_role("radiogroup", name="重复于哪个问题")
    expect(choices.get_by_role("radio").first).to_be_attached()
    assert repeat["code"] not in choices.inner_text()  # never itself
    panel.get_by_role("button", name="标记重复").click()
    expect(panel.get_by_role("alert")).to_have_text("请选择重复的原问题")
    assert live_server.issue(repeat["id"])["status"] == "reported"
    choice = choices.locator("label", has_text=original["code"])
    expect(choice).to_contain_text("相距 0 米")
    choice.get_by_role("radio").check()
    assert controls_without_names(page) == []
    panel.get_by_role("button", name="标记重复").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    marked = live_server.issue(repeat["id"])
    assert marked["status"] == "duplicate"
    assert marked["duplicate_of"] == original["id"]
