"""The auditor's search (GET /api/v1/audit/issues), the verdict's flag sentences, and the /audit
page as served (issue 16 item 3)."""

import re
from datetime import datetime, timedelta

from app.services import flag_text
from tests.factories import CHINA, assert_problem, dispatched_issue, jpeg, report


def found(client, zone, user="auditor", **params):
    response = client.get("/api/v1/audit/issues", params=params, headers=zone.headers(user))
    assert response.status_code == 200, response.text
    return [item["code"] for item in response.json()]


def test_search_by_code_text_office_period_and_flag(client, zone):
    flagged = report(client, zone, photos=[jpeg(lat=None, lon=None)], lat="34.75", lon="113.78")
    flagged = flagged.json()
    plain = report(client, zone, description="占道经营的摊位").json()
    in_b = dispatched_issue(client, zone, "B")
    codes = {flagged["code"], plain["code"], in_b["code"]}
    assert set(found(client, zone)) == codes
    assert found(client, zone, q=plain["code"]) == [plain["code"]]
    assert found(client, zone, q="摊位") == [plain["code"]]
    assert found(client, zone, org_unit="B") == [in_b["code"]]
    assert found(client, zone, flag="no_gps") == [flagged["code"]]
    today = datetime.now(CHINA).date()
    assert set(found(client, zone, **{"from": today.isoformat(), "to": today.isoformat()})) == codes
    yesterday = (today - timedelta(days=1)).isoformat()
    assert found(client, zone, **{"from": yesterday, "to": yesterday}) == []
    # Scope: office B's supervisor sees B's issue only; a worker may not search at all.
    assert found(client, zone, "b_super") == [in_b["code"]]
    assert found(client, zone, "b_super", q=plain["code"]) == []
    worker = client.get("/api/v1/audit/issues", headers=zone.headers("grid_worker"))
    assert_problem(worker, 403, "forbidden")


def test_search_refuses_bad_periods_and_flags(client, zone):
    for params in (
        {"from": "2026-12-06", "to": "2026-12-01"},
        {"from": "2025-01-01", "to": "2026-12-01"},
        {"from": "2026-13-01"},
        {"flag": "pretty"},
        {"limit": "0"},
    ):
        response = client.get(
            "/api/v1/audit/issues", params=params, headers=zone.headers("auditor")
        )
        assert_problem(response, 422, "validation_error")


def test_the_verdict_words_each_flag_as_flag_text_does(client, zone):
    issue = report(client, zone, photos=[jpeg(lat=None, lon=None)], lat="34.75", lon="113.78")
    issue = issue.json()
    verdict = client.get(
        f"/api/v1/issues/{issue['id']}/verification", headers=zone.headers("auditor")
    ).json()
    assert verdict["valid"] is True, verdict["problems"]
    photo = issue["photos"][0]
    sentences = verdict["flag_sentences"][str(photo["id"])]
    assert [s["code"] for s in sentences] == photo["flags"]
    assert {"code": "no_gps", "text": flag_text.SENTENCES["no_gps"][0]} in sentences


def test_the_page_is_served_with_its_csp_and_no_inline_script(client):
    page = client.get("/audit")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].count("script-src 'self'") == 1
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    body = page.text
    assert re.findall(r"<script[^>]*>", body) == [
        '<script type="module" src="/audit/assets/audit.js"></script>'[:-9]
    ]
    assert "http://" not in body and "https://" not in body
    assert f'<option value="no_gps">{flag_text.SENTENCES["no_gps"][0]}</option>' in body
    for asset in ("audit.js", "audit.css"):
        served = client.get(f"/audit/assets/{asset}")
        assert served.status_code == 200 and "https://" not in served.text
    assert client.get("/audit", headers={"If-None-Match": page.headers["etag"]}).status_code == 304
