"""Every problem+json a person reads is Chinese by default and English on request; the
`code` is the same in both."""

from fastapi.testclient import TestClient

from tests.factories import Zone, assert_problem


def _both(client: TestClient, method: str, url: str, **kwargs: object) -> tuple[dict, dict]:
    headers = dict(kwargs.pop("headers", {}))
    zh = client.request(method, url, headers=headers, **kwargs)
    en = client.request(
        method,
        url,
        headers={**headers, "Accept-Language": "en-US,en;q=0.9,zh;q=0.5"},
        **kwargs,
    )
    assert (zh.status_code, zh.json()["code"]) == (en.status_code, en.json()["code"])
    return zh.json(), en.json()


def test_an_app_error_speaks_chinese_unless_english_is_asked_for(client: TestClient) -> None:
    zh, en = _both(client, "GET", "/api/v1/issues")
    assert zh["code"] == "unauthenticated"
    assert zh["title"] == "需要有效的登录令牌，请重新登录"
    assert en["title"] == "A valid bearer token is required"


def test_a_validation_error_and_an_unknown_route_too(client: TestClient, zone: Zone) -> None:
    zh, en = _both(client, "GET", "/api/v1/issues?limit=0", headers=zone.headers("viewer"))
    assert (zh["code"], zh["title"]) == ("validation_error", "请求内容不符合要求")
    assert en["title"] == "The request is not valid"
    zh, en = _both(client, "GET", "/api/v1/nothing-here", headers=zone.headers("viewer"))
    assert (zh["code"], zh["title"], en["title"]) == ("not_found", "未找到", "Not found")


def test_a_chinese_reader_is_not_answered_in_english(client: TestClient, zone: Zone) -> None:
    response = client.get(
        "/api/v1/issues/999999",
        headers=zone.headers("viewer", **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}),
    )
    assert assert_problem(response, 404, "not_found")["title"] == "未找到"
