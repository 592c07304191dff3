"""Out-of-range dates are a 422 validation_error, never a 500 (issue 17, item 7)."""

import pytest
from fastapi.testclient import TestClient

from tests import factories
from tests.factories import Zone, assert_problem

OUT_OF_RANGE = ["0001-01-01T00:00:00", "9999-12-31T23:59:59-10:00", "0001-01-01", "9999-12-31"]
ROUTES = ["/api/v1/issues", "/api/v1/issues.geojson", "/api/v1/exports/ledger.csv"]


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
@pytest.mark.parametrize("route", ROUTES)
def test_updated_since_out_of_range_is_422(
    client: TestClient, zone: Zone, route: str, moment: str
) -> None:
    factories.report(client, zone)
    response = client.get(route, params={"updated_since": moment}, headers=zone.headers("d_super"))
    body = assert_problem(response, 422, "validation_error")
    assert "updated_since" in body["detail"]


def test_ledger_xlsx_out_of_range_is_422(client: TestClient, zone: Zone) -> None:
    response = client.get(
        "/api/v1/exports/ledger.xlsx",
        params={"updated_since": "0001-01-01T00:00:00"},
        headers=zone.headers("d_super"),
    )
    assert_problem(response, 422, "validation_error")


def test_updated_since_in_range_still_filters(client: TestClient, zone: Zone) -> None:
    factories.report(client, zone)
    headers = zone.headers("d_super")
    old = client.get("/api/v1/issues", params={"updated_since": "1999-01-01"}, headers=headers)
    assert old.status_code == 200 and len(old.json()["items"]) == 1
    later = client.get("/api/v1/issues", params={"updated_since": "2999-01-01"}, headers=headers)
    assert later.status_code == 200 and later.json()["items"] == []
    ledger = client.get(
        "/api/v1/exports/ledger.csv", params={"updated_since": "1999-01-01"}, headers=headers
    )
    assert ledger.status_code == 200 and len(ledger.text.strip().splitlines()) == 2


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1000-06-15"])
@pytest.mark.parametrize("period", ["week", "month"])
def test_rankings_out_of_range_is_422(
    client: TestClient, zone: Zone, day: str, period: str
) -> None:
    response = client.get(
        "/api/v1/rankings", params={"date": day, "period": period}, headers=zone.headers("d_super")
    )
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize(
    "params",
    [
        {"from": "0001-01-01T00:00:00"},
        {"to": "9999-12-31T23:59:59-10:00"},
        {"from": "0001-01-01", "to": "0001-01-07"},
        {"to": "0001-01-01"},
        {"to": "9999-12-31"},
    ],
)
def test_stats_out_of_range_is_422(client: TestClient, zone: Zone, params: dict[str, str]) -> None:
    response = client.get("/api/v1/stats", params=params, headers=zone.headers("d_super"))
    assert_problem(response, 422, "validation_error")
