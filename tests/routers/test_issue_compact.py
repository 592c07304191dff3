"""GET /api/v1/issues?view=compact: the dashboard's list, the same issues as the full view."""

from typing import Any

from fastapi.testclient import TestClient

from tests.factories import assert_problem
from tests.routers.test_issues import make_four

SAME_FIELDS = [
    "id", "code", "category", "status", "lat", "lon", "org_unit", "address", "grid_cell",
    "outside_grid",
    "reported_at", "deadline", "overdue", "rework_count", "source", "version", "updated_at",
    "flags", "crs",
]  # fmt: skip


def pages(client: TestClient, zone: Any, user: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of the list, following the cursor."""
    found, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/issues", params=query, headers=zone.headers(user))
        assert response.status_code == 200, response.text
        body = response.json()
        found.append(body)
        if not body["has_more"]:
            return found
        cursor = body["next_cursor"]


def items(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in found for item in page["items"]]


def test_compact_items_are_the_full_items_narrowed(client, zone, settings):
    four = make_four(client, zone, settings)
    for params in [{}, {"crs": "gcj02"}, {"status": "reported"}, {"overdue": "true"}]:
        full = items(pages(client, zone, "d_super", limit=2, **params))
        compact = pages(client, zone, "d_super", limit=2, view="compact", **params)
        assert [p["next_cursor"] for p in compact][-1] is not None
        narrowed = items(compact)
        assert [i["id"] for i in narrowed] == [i["id"] for i in full], params
        assert full, params
        for small, big in zip(narrowed, full, strict=True):
            assert {k: small[k] for k in SAME_FIELDS} == {k: big[k] for k in SAME_FIELDS}
            assert small["photo_count"] == len(big["photos"])
            befores = [p for p in big["photos"] if p["kind"] == "before"]
            assert small["thumb"] == befores[0]["urls"]["thumb"]
            assert not {"photos", "allowed_actions", "reported_by", "description"} & set(small)
    assert {i["id"] for i in items(pages(client, zone, "d_super", view="compact"))} == {
        issue["id"] for issue in four.values()
    }


def test_compact_is_scoped_like_the_full_view(client, zone, settings):
    make_four(client, zone, settings)
    for user in ["a_worker", "b_worker", "b_super"]:
        full = {i["id"] for i in items(pages(client, zone, user))}
        compact = {i["id"] for i in items(pages(client, zone, user, view="compact"))}
        assert compact == full, user
    assert {i["org_unit"] for i in items(pages(client, zone, "b_super", view="compact"))} <= {
        "B",
        "B1",
        "B1G",
    }


def test_an_unknown_view_is_a_validation_error(client, zone):
    for view in ["tiny", "", "COMPACT "]:
        response = client.get(
            "/api/v1/issues", params={"view": view}, headers=zone.headers("d_super")
        )
        assert_problem(response, 422, "validation_error")
