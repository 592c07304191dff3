"""The /dashboard page pinned to a period by its URL, in a real headless Chromium: 上周 shows
last week's ranking with the flags the command awarded beside the computed suggestion, every
tile names what it counts, a unit's flag history is one click away, and a refused period is
said on the page."""

import json
import urllib.request
from typing import Any

from tests.e2e.browser import require_playwright
from tests.e2e.test_dashboard_page import VIEWER, _Api, server  # noqa: F401 (the fixture)

require_playwright()


def _post(base: str, path: str, body: object, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _sign_in(page: Any) -> None:
    page.fill("input[name=username]", VIEWER[0])
    page.fill("input[name=password]", VIEWER[1])
    page.click("dialog#sign-in button[type=submit]")


def test_pinned_to_last_week_by_url_shows_that_weeks_ranking_and_flags(server, browser):  # noqa: F811
    api = _Api(server)
    last = api.get("/api/v1/rankings?period=last_week")[1]
    week = last["period_info"]["week"]
    status, login = _post(
        server, "/api/v1/auth/login", {"username": "zhihui", "password": "gridproof"}
    )
    assert status == 200
    command = login["token"]
    for unit, flag, note in (("JL", "red", "周末督查整改彻底"), ("MH", "black", "督查发现反弹")):
        status, body = _post(
            server,
            f"/api/v1/rankings/{week}/flags",
            {"org_unit": unit, "flag": flag, "note": note},
            command,
        )
        assert status == 201, body
    expected = api.get("/api/v1/rankings?period=last_week")[1]
    assert expected["flags_decided"] is True
    finals = {i["org_unit"]: i["final_flag"] for i in expected["items"]}
    assert finals["JL"] == "red" and finals["MH"] == "black"
    this_week = api.get("/api/v1/rankings?period=this_week")[1]
    assert this_week["period_info"]["week"] != week

    page = browser.new_page(viewport={"width": 1600, "height": 900}, locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server}/dashboard?every=2&map=svg&period=last_week")
    _sign_in(page)
    page.wait_for_selector("#ranking tr[data-unit]")
    assert page.get_attribute(".periods a[data-period=last_week]", "aria-current") == "true"
    assert page.text_content("#ranking-title") == "上周排名"
    label = expected["period_info"]["label"]
    assert label.startswith("上周（") and page.text_content("#period-label") == label
    assert "指挥部已评定" in page.text_content("#ranking-week")
    # Each row's flag is the awarded one; the units in the order the API ranks them.
    rows = page.eval_on_selector_all(
        "#ranking tr[data-unit]",
        "rows => rows.map(r => [r.dataset.unit, r.querySelector('.flag')?.textContent ?? null])",
    )
    names = {"red": "红旗", "black": "黑旗", None: None}
    assert rows == [[i["org_unit"], names[i["final_flag"]]] for i in expected["items"]][:10]
    # A computed suggestion the command did not follow stays visible beside it.
    for item in expected["items"]:
        if item["flag"] and item["final_flag"] != item["flag"]:
            row = page.text_content(f"#ranking tr[data-unit={item['org_unit']}]")
            assert f"建议{names[item['flag']]}" in row
    # Every tile says what it counts: the period's figures and the live ones apart.
    scopes = page.eval_on_selector_all(
        ".kpi",
        "ks => ks.map(k => [k.querySelector('b').id, k.querySelector('.scope').textContent])",
    )
    scope_of = dict(scopes)
    assert scope_of["kpi-total"] == label and scope_of["kpi-closure"] == label
    assert scope_of["kpi-open"] == "当前实时" and scope_of["kpi-overdue"] == "当前实时"

    # A unit's history of flags, one click away.
    page.click("#ranking button.unit[data-unit=JL]")
    page.wait_for_selector(f"#history[open] tr[data-week='{week}']")
    row = page.text_content(f"#history tr[data-week='{week}']")
    assert "红旗" in row and "周末督查整改彻底" in row
    assert "红旗 1 次" in page.text_content("#history-summary")
    page.click("#history-close")

    # The same page on 本周 does not show last week's awards.
    page.click(".periods a[data-period=this_week]")
    page.wait_for_selector(".periods a[data-period=this_week][aria-current]")
    page.wait_for_selector("#ranking tr[data-unit]")
    assert page.text_content("#ranking-title") == "本周排名"
    assert "指挥部已评定" not in page.text_content("#ranking-week")
    assert errors == []
    page.close()


def test_a_refused_period_is_said_on_the_page(server, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.goto(f"{server}/dashboard?every=2&map=svg&from=2026-03-01&to=2025-03-01")
    _sign_in(page)
    page.wait_for_function("() => document.getElementById('period-error').textContent.length > 0")
    assert "统计周期有误" in page.text_content("#period-error")
    assert page.input_value("#range input[name=from]") == "2026-03-01"
    page.close()


def test_the_demos_work_groups_and_task_forces_are_ranked(server):  # noqa: F811
    api = _Api(server)
    for kind, count in (("work_group", 10), ("task_force", 6)):
        weeks = [
            api.get(f"/api/v1/rankings?kind={kind}&period={p}")[1]
            for p in ("this_week", "last_week")
        ]
        assert all(len(week["items"]) == count for week in weeks), kind
        ranked = [i for week in weeks for i in week["items"] if i["rank"] is not None]
        assert ranked, f"some {kind} has work in the last two weeks"
    names = {i["name"] for i in api.get("/api/v1/rankings?kind=task_force")[1]["items"]}
    assert "拆违专班" in names
