"""What the fuzzer (tests/test_schemathesis.py) found, each pinned down by a plain test."""

import pytest

from tests.factories import assert_problem, report


@pytest.mark.parametrize("ledger", ["ledger.csv", "ledger.xlsx"])
@pytest.mark.parametrize(
    ("query", "field"),
    [("org_unit=null", "org_unit"), ("bbox=1,2,3", "bbox"), ("bbox=10,50,5,40", "bbox")],
)
def test_a_ledger_with_a_filter_that_cannot_be_used_is_refused_whole(
    client, zone, ledger, query, field
):
    # It used to start the answer (200, a streamed body) and break it off at the first row.
    report(client, zone)
    refused = client.get(f"/api/v1/exports/{ledger}?{query}", headers=zone.headers("d_super"))
    body = assert_problem(refused, 422, "validation_error")
    assert body["field"] == field


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/api/v1/auth/login", "/api/v1/auth/login"),
        ("/api/v1/issues/1/transitions", "/api/v1/issues/{issue_id}/transitions"),
    ],
)
def test_a_json_body_that_is_not_text_is_a_documented_bad_request(client, zone, url, path):
    sent = client.post(
        url,
        content=b"*\r\xff",
        headers=zone.headers("d_super", **{"content-type": "application/json"}),
    )
    assert_problem(sent, 400, "bad_request")
    documented = client.get("/openapi.json").json()["paths"][path]["post"]["responses"]
    assert "400" in documented
