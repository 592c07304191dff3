"""The service worker's photo cache on a shared phone (issue 17): keyed by the token, cleared
when it changes or expires, and never answering one user's photos to another."""

import re
from typing import Any

from tests.e2e.browser import require_playwright

require_playwright()

from playwright.sync_api import Page, expect  # noqa: E402

from tests import factories  # noqa: E402
from tests.e2e.conftest import LiveServer  # noqa: E402
from tests.e2e.helpers import sign_in, unique  # noqa: E402
from tests.e2e.test_phone import _dispatch_by_api, _report_by_api  # noqa: E402

PHOTO_CACHES = """async () => {
  const out = {};
  for (const name of await caches.keys()) {
    if (!name.startsWith("gp-photos")) continue;
    const requests = await (await caches.open(name)).keys();
    out[name] = requests.map((r) => new URL(r.url).pathname);
  }
  return out;
}"""

FETCH_AS = """async ([path, token]) => {
  try {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    return { status: r.status, type: r.headers.get("content-type") };
  } catch {
    return { status: 0 };  // no network and nothing cached for this token
  }
}"""


def _open_with_thumb(page: Page, issue: dict[str, Any]) -> str:
    """Open the issue and wait until its before-photo's thumbnail has been drawn."""
    page.goto(f"/m/#/issue/{issue['id']}")
    thumb = page.get_by_role("button", name="查看大图：整改前照片 1").locator("img")
    expect(thumb).to_have_attribute("src", re.compile("^blob:"))
    path: str = issue["photos"][0]["urls"]["thumb"]
    return path


def test_a_shared_phone_never_shows_the_last_users_photos(
    page: Page, live_server: LiveServer
) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("共用手机")))
    sign_in(page, "a_worker")
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    page.reload()  # now controlled by the service worker
    page.wait_for_function("() => !!navigator.serviceWorker.controller")
    thumb = _open_with_thumb(page, issue)
    caches = page.evaluate(PHOTO_CACHES)
    assert list(caches.values()) == [[thumb]], caches  # one cache, this session's
    first_cache = next(iter(caches))

    # Without the network the cache answers (the point of having it)…
    token_a = page.evaluate("() => JSON.parse(localStorage.getItem('gp.token'))")
    page.context.set_offline(True)
    assert page.evaluate(FETCH_AS, [thumb, token_a])["status"] == 200
    page.context.set_offline(False)

    # …but once the session has ended on the server, the cached bytes are refused with it.
    with live_server.api("a_worker") as client:
        client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token_a}"})
    assert page.evaluate(FETCH_AS, [thumb, token_a])["status"] == 401
    assert first_cache not in page.evaluate(PHOTO_CACHES)

    # Another user on the same phone, whose scope does not include the issue: 404, not a photo.
    token_b = live_server.zone.tokens["b_worker"]
    assert page.evaluate(FETCH_AS, [thumb, token_b])["status"] == 404
    page.context.set_offline(True)
    assert page.evaluate(FETCH_AS, [thumb, token_b])["status"] == 0
    page.context.set_offline(False)


def test_the_app_clears_the_photo_cache_when_the_session_expires_and_on_sign_in(
    page: Page, live_server: LiveServer
) -> None:
    issue = _dispatch_by_api(live_server, _report_by_api(live_server, unique("过期清除")))
    sign_in(page, "a_worker")
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
    page.reload()
    page.wait_for_function("() => !!navigator.serviceWorker.controller")
    _open_with_thumb(page, issue)
    assert page.evaluate(PHOTO_CACHES)
    token_a = page.evaluate("() => JSON.parse(localStorage.getItem('gp.token'))")
    with live_server.api("a_worker") as client:
        client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token_a}"})

    page.reload()  # the app checks its token (/auth/me → 401): sign-in screen, caches gone
    expect(page.get_by_text("登录已过期")).to_be_visible()
    page.wait_for_function(
        "async () => !(await caches.keys()).some((n) => n.startsWith('gp-photos'))"
    )
    assert page.evaluate("() => localStorage.getItem('gp.cache.tasks')") is None

    page.get_by_label("用户名").fill("b_worker")
    page.get_by_label("密码").fill(factories.PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("body[data-ready=report]")).to_be_attached()
    page.goto(f"/m/#/issue/{issue['id']}")
    expect(page.get_by_role("alert")).to_contain_text("问题不存在或无权查看")
    assert page.evaluate(PHOTO_CACHES) == {}
