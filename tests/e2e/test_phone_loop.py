"""Issue 14 on the phone: everyone in the field loop finishes their job in real Chromium
(phone viewport, position granted in 经开区)."""

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.e2e.browser import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402
from sqlmodel import select  # noqa: E402

from app.models import Issue  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from app.services import geo  # noqa: E402
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
    SHANGHAI,
    _action_buttons,
    _by_description,
    _dispatch_by_api,
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


def _set_deadline(server: LiveServer, issue_id: int, hours: float) -> None:
    with server.session() as session:
        row = session.exec(select(Issue).where(Issue.id == issue_id)).one()
        row.deadline_at = utcnow() + timedelta(hours=hours)
        session.add(row)
        session.commit()


def test_supervisor_queues_search_filter_and_sort(page: Page, live_server: LiveServer) -> None:
    tag = unique("队列")
    fresh = _report_by_api(live_server, f"{tag} 新报")
    soon = _dispatch_by_api(live_server, _report_by_api(live_server, f"{tag} 快到期"))
    later = _dispatch_by_api(live_server, _report_by_api(live_server, f"{tag} 晚到期"))
    late = _dispatch_by_api(live_server, _report_by_api(live_server, f"{tag} 已超期"))
    _set_deadline(live_server, soon["id"], 30)
    _set_deadline(live_server, later["id"], 300)
    _set_deadline(live_server, late["id"], -2)

    sign_in(page, "d_super")
    search = page.get_by_role("searchbox", name="搜索")
    search.fill(tag)
    working = _queue(page, "整改中")
    expect(working.get_by_role("heading")).to_have_text("整改中 (3)")
    expect(_queue(page, "待受理").locator("li")).to_have_count(1)
    expect(_queue(page, "待受理")).to_contain_text(fresh["code"])
    assert controls_without_names(page) == []
    assert not _overflows(page)

    # Sorted by deadline: the overdue one, then the nearer, then the later deadline.
    page.get_by_label("排序").select_option("deadline")
    expect(working.locator("li").first).to_contain_text(late["code"])
    codes = working.locator("li .title").all_inner_texts()
    assert [c.split(" ")[0] for c in codes] == [late["code"], soon["code"], later["code"]]

    # Overdue only: one queue, one issue.
    page.get_by_label("只看超期").check()
    overdue = _queue(page, "已超期")
    expect(overdue.get_by_role("heading")).to_have_text("已超期 (1)")
    expect(overdue).to_contain_text(late["code"])
    expect(_queue(page, "待受理")).to_have_count(0)
    page.get_by_label("只看超期").uncheck()

    # By office: these were dispatched to 祥云办事处 (A), none to 九龙办事处 (B).
    page.get_by_label("单位").select_option("B")
    expect(_queue(page, "整改中").get_by_role("heading")).to_have_text("整改中 (0)")
    page.get_by_label("单位").select_option("A")
    expect(_queue(page, "整改中").get_by_role("heading")).to_have_text("整改中 (3)")

    # By code: exactly that issue; the filters are kept when coming back from an issue.
    search.fill(later["code"])
    expect(working.get_by_role("heading")).to_have_text("整改中 (1)")
    working.get_by_role("link", name=re.compile(later["code"])).click()
    page.get_by_role("link", name="‹ 返回").click()
    expect(page.get_by_role("searchbox", name="搜索")).to_have_value(later["code"])
    expect(_queue(page, "整改中").get_by_role("heading")).to_have_text("整改中 (1)")
    page.get_by_role("searchbox", name="搜索").fill("")
    page.get_by_label("单位").select_option("")


def test_my_reports_follow_their_status_and_the_receipt_links_there(
    page: Page, live_server: LiveServer
) -> None:
    """我的上报: a grid worker's own reports with status, office and deadline, kept current."""
    description = unique("我的上报")
    sign_in(page, "grid_worker")
    fill_report(page, "暴露垃圾", description, [_photo().payload()])
    page.get_by_role("button", name="提交").click()
    receipt = outbox_items(page).get_by_role("link", name=re.compile("^已上报 JK-.*我的上报"))
    expect(receipt).to_be_visible()
    [issue] = _by_description(live_server, description)
    receipt.click()

    card = page.locator(f"ul.tasks > li[data-issue='{issue['id']}']")
    expect(card).to_contain_text(issue["code"])
    expect(card).to_contain_text("待受理")
    expect(card).to_contain_text("远大社区第一网格")  # still with the reporter's own unit
    expect(card).to_have_class(re.compile("focus"))
    expect(page.get_by_role("link", name="我的上报", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    assert controls_without_names(page) == []
    assert not _overflows(page)

    # Dispatched by a supervisor: the list follows when the app is looked at again.
    _dispatch_by_api(live_server, issue)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(card).to_contain_text("整改中")
    expect(card).to_contain_text("祥云办事处")
    expect(card).to_contain_text("整改期限")
    expect(card).to_contain_text("有更新")
    card.get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(issue["code"]))).to_be_visible()
    page.get_by_role("link", name="‹ 返回").click()
    expect(page.get_by_role("heading", name="我的上报")).to_be_visible()

    # Nobody else's reports are in the list.
    other = _report_by_api(live_server, unique("别人的"), username="d_super")
    page.get_by_role("button", name="刷新").click()
    expect(card).to_be_visible()
    expect(page.locator(f"ul.tasks > li[data-issue='{other['id']}']")).to_have_count(0)


# --- With the server side of issue 14 (navigation, flag_notes, extensions, reject) ---------------


def _act(server: LiveServer, username: str, issue_id: int, action: str, **body: Any) -> Any:
    current = server.issue(issue_id, username)
    with server.api(username) as client:
        response = client.post(
            f"/api/v1/issues/{issue_id}/transitions",
            json={"action": action, **body},
            headers={"If-Match": f'"{current["version"]}"'},
        )
        assert response.status_code == 200, response.text
        return response.json()


def _add_after(server: LiveServer, issue_id: int, blob: bytes) -> None:
    with server.api("a_worker") as client:
        response = client.post(
            f"/api/v1/issues/{issue_id}/photos",
            data={"kind": "after"},
            files=factories.files("files", blob),
        )
        assert response.status_code == 201, response.text


def _lon_lat(url: str, key: str) -> tuple[float, float]:
    value = parse_qs(urlparse(url).query)[key][0]
    a, b = (float(v) for v in value.split(","))
    return a, b


def test_office_worker_finds_the_address_map_and_navigation(
    page: Page, live_server: LiveServer
) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("导航")))
    sign_in(page, "a_worker")
    page.get_by_role("link", name="任务", exact=True).click()
    card = page.locator(f"ul.tasks > li[data-issue='{issue['id']}']")
    expect(card.locator(".distance")).to_contain_text(re.compile(r"距你 \d+ 米"))
    amap = card.get_by_role("link", name="高德地图导航")
    expect(amap).to_be_visible()

    # AMap takes GCJ-02 (lon,lat), Baidu BD-09 (lat,lon): the issue's point, converted.
    gcj_lat, gcj_lon = geo.wgs84_to_gcj02(issue["lat"], issue["lon"])
    lon, lat = _lon_lat(amap.get_attribute("href") or "", "position")
    assert geo.distance_m(lat, lon, gcj_lat, gcj_lon) < 5
    baidu = card.get_by_role("link", name="百度地图导航").get_attribute("href") or ""
    b_lat, b_lon = _lon_lat(baidu, "location")
    bd_lat, bd_lon = geo.wgs84_to_bd09(issue["lat"], issue["lon"])
    assert geo.distance_m(b_lat, b_lon, bd_lat, bd_lon) < 5
    assert controls_without_names(page) == []
    assert not _overflows(page)

    # The issue screen: the same links, a map with the spot and the phone, the distance.
    card.locator("a.task-link").click()
    where = page.get_by_role("region", name="位置和导航")
    expect(where.get_by_role("img", name=f"{issue['code']} 所在位置的地图")).to_be_visible()
    expect(where.locator("svg circle.spot")).to_have_count(1)
    expect(where.locator("svg circle.phone")).to_have_count(1)
    expect(where).to_contain_text(re.compile(r"距你 \d+ 米"))
    link = where.get_by_role("link", name="高德地图导航").get_attribute("href") or ""
    assert geo.distance_m(*reversed(_lon_lat(link, "position")), gcj_lat, gcj_lon) < 5
    assert not _overflows(page)
    page.get_by_role("button", name="Switch to English").click()
    expect(page.get_by_role("link", name="Navigate with AMap")).to_be_visible()
    expect(page.get_by_role("button", name="Ask for more time")).to_be_visible()
    assert controls_without_names(page) == []
    assert not _overflows(page)


def test_verifier_reads_the_flags_in_chinese_before_passing_a_reused_photo(
    page: Page, live_server: LiveServer
) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("旧照片")))
    # The after-photo is the before-photo again (the same bytes _report_by_api sent).
    _add_after(live_server, issue["id"], factories.jpeg(seed=3))
    _act(live_server, "a_worker", issue["id"], "submit_rectification")

    sign_in(page, "d_super")
    page.get_by_role("searchbox", name="搜索").fill(issue["code"])
    card = _queue(page, "待验收").locator("li", has_text=issue["code"])
    expect(card.locator(".flag-chip")).to_have_text("照片异常")  # seen in the queue already
    page.goto(f"/m/#/issue/{issue['id']}")
    flagged = page.locator(".notice.flagged")
    expect(flagged).to_contain_text("整改后照片与整改前相同")
    expect(page.locator("section.photos")).to_contain_text("整改后照片与整改前相同")
    expect(page.get_by_label("验收说明（照片有异常，通过需填写）")).to_be_visible()
    page.get_by_role("button", name="验收通过").click()
    expect(page.get_by_role("alert")).to_have_text("照片有异常标记：验收通过前请填写说明")
    assert live_server.issue(issue["id"])["status"] == "rectified"
    # In English the server words them in English (the app sends Accept-Language: en).
    page.get_by_role("button", name="Switch to English").click()
    expect(page.locator(".notice.flagged")).to_contain_text(
        "The after-photo matches a before-photo"
    )
    page.get_by_role("button", name="切换到中文").click()
    expect(flagged).to_contain_text("整改后照片与整改前相同")
    page.get_by_label("验收说明（照片有异常，通过需填写）").fill("现场复核，已整改，照片为同一角度")
    page.get_by_role("button", name="验收通过").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    assert live_server.issue(issue["id"])["status"] == "closed"


def _ask_for_more_time(page: Page, issue: dict[str, Any], days: int) -> str:
    sign_in(page, "a_worker")
    page.goto(f"/m/#/issue/{issue['id']}")
    wanted = (datetime.now(SHANGHAI) + timedelta(days=days)).strftime("%Y-%m-%d")
    page.get_by_label("整改期限").fill(f"{wanted}T18:00")
    page.get_by_role("button", name="申请延期").click()
    expect(page.get_by_role("alert")).to_have_text("请填写备注")
    page.get_by_label("申请延期说明").fill("需要协调施工队，材料未到")
    page.get_by_role("button", name="申请延期").click()
    expect(page.get_by_role("heading", name="我的任务")).to_be_visible()
    page.get_by_role("button", name="退出登录").click()
    return wanted


def test_extension_requested_then_approved(page: Page, live_server: LiveServer) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("延期批准")))
    wanted = _ask_for_more_time(page, issue, 20)
    asked = live_server.issue(issue["id"])["extension_request"]
    assert asked["requested_by"] == "a_worker"

    sign_in(page, "d_super")
    queue = _queue(page, "延期申请")
    queue.get_by_role("link", name=re.compile(issue["code"])).click()
    expect(page.get_by_role("note").filter(has_text="延期申请")).to_contain_text("材料未到")
    expect(page.get_by_role("button", name="批准延期", exact=True)).to_be_visible()
    assert {"approve_extension", "refuse_extension"} <= _action_buttons(page)
    page.get_by_role("button", name="批准延期", exact=True).click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    approved = live_server.issue(issue["id"])
    assert approved["extension_request"] is None
    assert approved["deadline"].startswith(f"{wanted}T10:00")  # 18:00 in Shanghai


def test_extension_requested_then_refused(page: Page, live_server: LiveServer) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("延期不批")))
    before = live_server.issue(issue["id"])["deadline"]
    _ask_for_more_time(page, issue, 25)
    sign_in(page, "d_super")
    page.goto(f"/m/#/issue/{issue['id']}")
    page.get_by_role("button", name="不批准延期").click()
    expect(page.get_by_role("alert")).to_have_text("请填写备注")
    page.get_by_label("不批准延期说明").fill("按原期限完成")
    page.get_by_role("button", name="不批准延期").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    refused = live_server.issue(issue["id"])
    assert refused["extension_request"] is None
    assert refused["deadline"] == before


def test_returned_by_the_office_then_refused(page: Page, live_server: LiveServer) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("退回")))
    sign_in(page, "a_worker")
    page.goto(f"/m/#/issue/{issue['id']}")
    page.get_by_label("退回说明").fill("不属于本办事处辖区")
    page.get_by_role("button", name="退回").click()
    expect(page.get_by_role("heading", name="我的任务")).to_be_visible()
    page.get_by_role("button", name="退出登录").click()

    sign_in(page, "d_super")
    page.get_by_role("searchbox", name="搜索").fill(issue["code"])  # among a few hundred
    _queue(page, "待受理").get_by_role("link", name=re.compile(issue["code"])).click()
    expect(page.get_by_role("button", name="不予受理")).to_be_visible()
    expect(page.get_by_role("note").filter(has_text="a_worker 退回")).to_contain_text(
        "不属于本办事处辖区"
    )
    assert "reject" in _action_buttons(page)
    page.get_by_label("不予受理说明").fill("非城市管理问题")
    page.get_by_role("button", name="不予受理").click()
    expect(page.get_by_role("heading", name="审核")).to_be_visible()
    assert live_server.issue(issue["id"])["status"] == "rejected"


def test_rectified_quantity_given_at_submit(page: Page, live_server: LiveServer) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("整改数量")))
    sign_in(page, "a_worker")
    page.goto(f"/m/#/issue/{issue['id']}")
    page.get_by_label("整改后照片").set_input_files([_photo().payload()])
    quantity = page.get_by_label("整改数量")
    quantity.fill("-3")
    page.get_by_role("button", name="提交整改").click()
    expect(page.get_by_role("alert").filter(has_text="整改数量")).to_be_visible()
    quantity.fill("12000")
    page.get_by_role("button", name="提交整改").click()
    expect(outbox_items(page).filter(has_text="已完成")).to_have_count(2)
    done = live_server.issue(issue["id"])
    assert done["status"] == "rectified"
    assert done["rectified_quantity"] == 12000
