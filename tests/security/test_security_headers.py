"""The policies of app/security_headers.py (the pages themselves are checked in Chromium:
tests/e2e/test_csp.py)."""

from fastapi.testclient import TestClient

from app.security_headers import DEFAULT_CSP, page_csp, template_origin
from tests.factories import Zone


def test_a_tile_template_becomes_one_csp_source() -> None:
    amap = "https://webrd0{s}.is.autonavi.com/appmaptile?x={x}&y={y}&z={z}"
    assert template_origin(amap) == "https://*.is.autonavi.com"
    assert (
        template_origin("http://tiles.intranet:8080/{z}/{x}/{y}.png")
        == "http://tiles.intranet:8080"
    )
    assert template_origin("https://t0.tianditu.gov.cn/{z}/{x}/{y}") == "https://t0.tianditu.gov.cn"
    # What a CSP source cannot say is not allowed at all.
    assert template_origin("https://a.{s}.example.cn/{z}") is None
    assert template_origin("javascript:alert(1)") is None
    assert template_origin("") is None
    assert "img-src 'self' data: blob: https://*.is.autonavi.com;" in page_csp(
        image_origins=("https://*.is.autonavi.com",)
    )


def test_every_answer_carries_the_headers_and_a_page_keeps_its_own(
    client: TestClient, zone: Zone
) -> None:
    for path in ("/api/v1/categories", "/api/v1/nowhere", "/healthz"):
        answer = client.get(path, headers=zone.headers("viewer"))
        assert answer.headers["content-security-policy"] == DEFAULT_CSP, path
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = client.get("/dashboard")
    assert page.headers["content-security-policy"] == page_csp()
    docs = client.get("/docs").headers["content-security-policy"]
    assert (
        "script-src 'self' 'sha256-" in docs and "unsafe-inline';" not in docs.split("style-src")[0]
    )
    assert b"cdn.redoc.ly" not in client.get("/docs/assets/redoc.standalone.js").content
