"""At most a few ledger exports at once per user and in all: 429 with Retry-After beyond
(issue 17, item 7). The slots are per process: the test holds some, as running exports would."""

import gc
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.services import export_slots
from tests import factories
from tests.factories import Zone, assert_problem

CSV, XLSX = "/api/v1/exports/ledger.csv", "/api/v1/exports/ledger.xlsx"


@pytest.fixture
def held() -> Iterator[list[export_slots.Slot]]:
    slots: list[export_slots.Slot] = []
    yield slots
    for slot in slots:
        slot.release()
    assert export_slots.running() == 0


def _hold(settings: Settings, zone: Zone, username: str, held: list[export_slots.Slot]) -> None:
    held.append(export_slots.acquire(settings, zone.users[username]))


@pytest.mark.parametrize("route", [CSV, XLSX])
def test_a_user_over_their_limit_gets_429_and_others_still_export(
    client: TestClient, zone: Zone, settings: Settings, held: list[export_slots.Slot], route: str
) -> None:
    factories.report(client, zone)
    for _ in range(settings.exports_per_user):
        _hold(settings, zone, "d_super", held)
    response = client.get(route, headers=zone.headers("d_super"))
    body = assert_problem(response, 429, "too_many_requests")
    assert int(response.headers["Retry-After"]) == body["retry_after_s"] > 0
    assert client.get(route, headers=zone.headers("auditor")).status_code == 200
    held.pop().release()
    assert client.get(route, headers=zone.headers("d_super")).status_code == 200
    assert export_slots.running() == len(held)


def test_the_server_over_its_total_gets_429_for_everyone(
    client: TestClient, zone: Zone, settings: Settings, held: list[export_slots.Slot]
) -> None:
    users = ["d_super", "a_super", "b_super", "d_super2", "admin"]
    for i in range(settings.exports_total):
        _hold(settings, zone, users[i % len(users)], held)
    response = client.get(CSV, headers=zone.headers("auditor"))
    assert_problem(response, 429, "too_many_requests")
    assert response.headers["Retry-After"]
    held.pop().release()
    assert client.get(CSV, headers=zone.headers("auditor")).status_code == 200


def test_finished_and_failed_exports_free_their_slot(
    client: TestClient, zone: Zone, settings: Settings
) -> None:
    factories.report(client, zone)
    for _ in range(settings.exports_per_user + 2):
        assert client.get(CSV, headers=zone.headers("d_super")).status_code == 200
        assert client.get(XLSX, headers=zone.headers("d_super")).status_code == 200
    # Refused filters free the slot at once (collection is off meanwhile: nothing waits for
    # the garbage collector to find a traceback that holds it).
    gc.disable()
    try:
        for route in (CSV, XLSX):
            bad = client.get(route, params={"org_unit": "NOPE"}, headers=zone.headers("d_super"))
            assert_problem(bad, 422, "validation_error")
            assert export_slots.running() == 0, route
    finally:
        gc.enable()


def test_an_export_dropped_before_its_first_chunk_frees_its_slot(
    settings: Settings, zone: Zone
) -> None:
    chunks = export_slots.Held(export_slots.acquire(settings, zone.users["viewer"]), iter([b"x"]))
    assert export_slots.running() == 1
    chunks.close()
    assert export_slots.running() == 0
    dropped = export_slots.Held(export_slots.acquire(settings, zone.users["viewer"]), iter([]))
    del dropped
    assert export_slots.running() == 0
