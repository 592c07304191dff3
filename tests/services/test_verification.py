"""`gridproof verify` checks what the evidence claims: each tamper makes it exit 1 naming the
issue and what differs (issue 17 item 5). Run in-process against both engines."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from app import cli
from app.config import Settings, get_settings
from app.db import get_engine
from app.models import Issue, IssueEvent, Photo
from app.services.objects import open_store
from app.services.photos import RECIPES, derive_again
from app.services.storage import Storage
from tests.factories import LAT, LON, Zone, add_photos, dispatched_issue, jpeg, report
from tests.stored import derivative_file

Scenario = dict[str, Any]


@pytest.fixture
def scenario(
    client: TestClient, zone: Zone, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scenario]:
    """A rectified issue with an address, a flagged before-photo and an after-photo; a second
    issue beside it; and `gridproof verify` pointed at their database and uploads."""
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(settings.upload_dir))
    get_settings.cache_clear()
    reported = report(
        client,
        zone,
        photos=[jpeg(lat=None, lon=None, seed=7)],
        lat=str(LAT),
        lon=str(LON),
        accuracy_m="8",
        address="经开区第三大街12号",
    )
    assert reported.status_code == 201, reported.text
    issue = dispatched_issue(client, zone)  # another issue, untouched by the tampers
    other = issue["id"]
    issue = client.post(
        f"/api/v1/issues/{reported.json()['id']}/transitions",
        json={"action": "dispatch", "org_unit": "A"},
        headers=zone.headers("d_super", **{"If-Match": f'"{reported.json()["version"]}"'}),
    ).json()
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    issue = client.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("a_worker")).json()
    submitted = client.post(
        f"/api/v1/issues/{issue['id']}/transitions",
        json={"action": "submit_rectification"},
        headers=zone.headers("a_worker", **{"If-Match": f'"{issue["version"]}"'}),
    )
    assert submitted.status_code == 200, submitted.text
    yield {"id": issue["id"], "code": issue["code"], "other": other, "settings": settings}
    get_settings.cache_clear()


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = cli.main(["verify", *argv])
    return status, capsys.readouterr().out.splitlines()


def execute(settings: Settings, statement: Any) -> None:
    with Session(get_engine(settings.database_url)) as session:
        session.execute(statement)
        session.commit()


def rows(settings: Settings, model: Any, *where: Any) -> list[Any]:
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        return list(session.exec(select(model).where(*where).order_by(col(model.id))))


def assert_found(capsys: pytest.CaptureFixture[str], scenario: Scenario, *words: str) -> list[str]:
    """verify exits 1 with a line naming the issue and every word; the other issue is clean."""
    status, lines = verify(capsys)
    naming = [line for line in lines if f"issue {scenario['id']} " in line]
    assert status == 1, lines
    assert [line for line in naming if all(word in line for word in words)], lines
    assert not [line for line in lines if f"issue {scenario['other']} " in line], lines
    assert verify(capsys, "--issue", str(scenario["other"]))[0] == 0
    return naming


def test_untouched_evidence_verifies(scenario, capsys):
    status, lines = verify(capsys)
    assert status == 0, lines
    assert "checked 3 photo(s) and 2 audit chain(s): OK" in lines[-1]


def test_deleting_the_last_event(scenario, capsys):
    settings = scenario["settings"]
    last = rows(settings, IssueEvent, IssueEvent.issue_id == scenario["id"])[-1]
    assert last.action == "submit_rectification"
    execute(settings, delete(IssueEvent).where(col(IssueEvent.id) == last.id))
    assert_found(capsys, scenario, "status is rectified", "lead to dispatched")


def test_deleting_the_last_photo_event(scenario, capsys):
    settings = scenario["settings"]
    events = rows(settings, IssueEvent, IssueEvent.issue_id == scenario["id"])
    execute(settings, delete(IssueEvent).where(col(IssueEvent.id).in_([e.id for e in events[2:]])))
    execute(
        settings, update(Issue).where(col(Issue.id) == scenario["id"]).values(status="dispatched")
    )
    assert_found(capsys, scenario, "photo", "after", "on no event")


@pytest.mark.parametrize(
    ("column", "value"),
    [("description", "已整改，无问题"), ("address", "别处"), ("location_source", "exif")],
)
def test_rewriting_what_was_reported(scenario, capsys, column, value):
    settings = scenario["settings"]
    execute(settings, update(Issue).where(col(Issue.id) == scenario["id"]).values({column: value}))
    assert_found(capsys, scenario, column, repr(value), "report event records")


@pytest.mark.parametrize("column", ["rectified_by_id", "org_unit_id"])
def test_changing_who_rectified_or_the_responsible_unit(scenario, capsys, zone, column):
    settings = scenario["settings"]
    other = zone.users["a_worker2"] if column == "rectified_by_id" else zone.users["b_super"]
    value = other.id if column == "rectified_by_id" else other.org_unit_id
    execute(settings, update(Issue).where(col(Issue.id) == scenario["id"]).values({column: value}))
    words = ("rectified_by_id is user",) if column == "rectified_by_id" else ("dispatched to A",)
    assert_found(capsys, scenario, *words)


def test_closing_without_an_event(scenario, capsys):
    settings = scenario["settings"]
    execute(settings, update(Issue).where(col(Issue.id) == scenario["id"]).values(status="closed"))
    assert_found(capsys, scenario, "status is closed", "lead to rectified")


def test_relabelling_a_before_photo_and_clearing_its_flags(scenario, capsys):
    settings = scenario["settings"]
    before = rows(settings, Photo, Photo.issue_id == scenario["id"], Photo.kind == "before")[0]
    assert before.flags, "the scenario's before-photo should carry a flag"
    relabel = update(Photo).where(col(Photo.id) == before.id).values(kind="after", flags=[])
    execute(settings, relabel)
    naming = assert_found(capsys, scenario, f"photo {before.id} kind is 'after'", "'before'")
    assert [line for line in naming if f"photo {before.id} flags is []" in line], naming


def test_rewriting_a_photos_exif_facts(scenario, capsys):
    settings = scenario["settings"]
    after = rows(settings, Photo, Photo.issue_id == scenario["id"], Photo.kind == "after")[0]
    moved = update(Photo).where(col(Photo.id) == after.id).values(taken_at="2026-01-01T08:00:00")
    execute(settings, moved)
    assert_found(capsys, scenario, f"photo {after.id} taken_at", "2026-01-01T08:00:00")


@pytest.mark.parametrize("column", ["actor_id", "actor"])
def test_changing_an_events_actor(scenario, capsys, zone, column):
    settings = scenario["settings"]
    submit = rows(settings, IssueEvent, IssueEvent.issue_id == scenario["id"])[-1]
    other = zone.users["a_worker2"]
    value = other.id if column == "actor_id" else other.username
    execute(
        settings, update(IssueEvent).where(col(IssueEvent.id) == submit.id).values({column: value})
    )
    words = ("actor is 'a_worker'",) if column == "actor_id" else ("hash does not match",)
    assert_found(capsys, scenario, f"event {submit.seq}", *words)


def test_swapping_a_thumbnail(scenario, capsys):
    settings = scenario["settings"]
    before, after = rows(settings, Photo, Photo.issue_id == scenario["id"])
    storage = Storage(settings.upload_dir)
    target = derivative_file(storage.root, before.sha256, "thumb")
    target.write_bytes(derivative_file(storage.root, after.sha256, "thumb").read_bytes())
    status, lines = verify(capsys)
    assert status == 1
    assert [
        line
        for line in lines
        if f"photo {before.id} (issue {scenario['id']})" in line and "thumb derivative" in line
    ], lines
    assert verify(capsys, "--skip-derivatives")[0] == 0  # only the re-derivation sees it


def test_a_missing_derivative(scenario, capsys):
    settings = scenario["settings"]
    after = rows(settings, Photo, Photo.issue_id == scenario["id"], Photo.kind == "after")[0]
    derivative_file(settings.upload_dir, after.sha256, "large").unlink()
    status, lines = verify(capsys)
    assert status == 1
    assert [line for line in lines if f"photo {after.id} " in line and "large" in line], lines


def test_derivatives_of_an_older_recipe_still_verify(scenario, capsys):
    """A photo stored before the encoder settings changed (photos.RECIPES) keeps verifying; a
    derivative that no recipe makes of its original does not."""
    settings = scenario["settings"]
    after = rows(settings, Photo, Photo.issue_id == scenario["id"], Photo.kind == "after")[0]
    storage, store = Storage(settings.upload_dir), open_store(settings)
    newest, older = RECIPES[0], RECIPES[-1]
    assert newest != older
    made = {r.name: derive_again(after.sha256, settings, storage, store, r) for r in RECIPES}
    assert made[newest.name]["large"] != made[older.name]["large"]  # the recipes differ
    large = derivative_file(settings.upload_dir, after.sha256, "large")
    assert large.read_bytes() == made[newest.name]["large"]  # what ingest stores today
    large.write_bytes(made[older.name]["large"])
    assert verify(capsys)[0] == 0
    large.write_bytes(made[older.name]["large"][:-2] + b"\x00\xff\xd9")
    status, lines = verify(capsys)
    assert status == 1
    assert [line for line in lines if f"photo {after.id} " in line and "large" in line], lines
