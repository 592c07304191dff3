"""The change counter and the change feed: numbers in commit order, a cursor on every page,
nothing missed while writers commit concurrently and out of order."""

import base64
import io
import json
import random
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, select
from sqlmodel import Session

from app.config import Settings
from app.db import alembic_config, get_engine
from app.errors import AppError, ValidationFailed
from app.models import ChangeCounter, Issue, User
from app.models.base import utcnow
from app.models.issue import IssueReport, PhotoForm, TransitionRequest
from app.models.photo import PhotoKind
from app.services import changes, issues, reporting
from app.services.issue_list import IssueFilters, list_issues
from app.services.storage import Storage
from tests import factories


def _report(session: Session, settings: Settings, user: User, seed: int, **kwargs: Any) -> Issue:
    photo = io.BytesIO(factories.jpeg(seed=seed, width=96, height=72))
    form = IssueReport(category="flyposter", description=f"小广告 {seed}")
    uploads = reporting.Uploads({"photos": [photo]})
    caller = reporting.Caller(session, settings, Storage(settings.upload_dir), user)
    issue, _ = reporting.report_issue(caller, form, uploads, **kwargs)
    return issue


def _act(session: Session, settings: Settings, user: User, issue: Issue, action: str, **body: Any):
    request = TransitionRequest.model_validate({"action": action, **body})
    return issues.apply_transition(
        session, settings, user, issue.id or 0, request, version=issue.version
    )


def _seqs(session: Session) -> dict[int, int]:
    return {i.id or 0: i.change_seq for i in session.exec(select(Issue)).scalars()}


def test_every_write_takes_the_next_number(session, settings, zone):
    worker, d_super = zone.users["grid_worker"], zone.users["d_super"]
    start = changes.current(session)
    issue = _report(session, settings, worker, 1)
    assert issue.change_seq == start + 1
    issue = _act(session, settings, d_super, issue, "accept")
    assert issue.change_seq == start + 2
    caller = reporting.Caller(session, settings, Storage(settings.upload_dir), worker)
    blob = io.BytesIO(factories.jpeg(seed=2, width=96, height=72))
    upload = reporting.Uploads({"files": [blob]})
    reporting.add_photos(caller, issue.id or 0, PhotoForm(kind=PhotoKind.BEFORE), upload)
    session.refresh(issue)
    assert issue.change_seq == start + 3 == changes.current(session)


def test_a_failed_write_takes_no_number(session, settings, zone):
    issue = _report(session, settings, zone.users["grid_worker"], 1)
    before = changes.current(session)
    with pytest.raises(AppError):
        _act(session, settings, zone.users["d_super"], issue, "reject")  # needs a note
    session.rollback()
    assert changes.current(session) == before


def test_updated_at_never_decreases_along_the_feed(session, settings, zone):
    """A write stamped with an earlier clock still sorts, and is stamped, after later ones."""
    worker = zone.users["grid_worker"]
    now = utcnow()
    late = _report(session, settings, worker, 1, now=now)
    early = _report(session, settings, worker, 2, now=now - timedelta(minutes=5))
    assert early.change_seq > late.change_seq
    assert early.updated_at == late.updated_at == now
    assert early.reported_at == now - timedelta(minutes=5)
    rows = session.exec(select(Issue).order_by(Issue.change_seq)).scalars().all()
    stamps = [i.updated_at for i in rows]
    assert stamps == sorted(stamps)


def test_the_feed_has_a_cursor_on_every_page(session, settings, zone):
    worker, auditor = zone.users["grid_worker"], zone.users["auditor"]
    made = [_report(session, settings, worker, n) for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor, has_more = list_issues(session, auditor, IssueFilters(), utcnow(), 2, cursor)
        assert cursor  # the last page too
        seen += [i.id for i in page]
        pages += 1
        if not has_more:
            break
    assert seen == [i.id for i in made] and pages == 3
    # Nothing new: the same position comes back.
    page, again, has_more = list_issues(session, auditor, IssueFilters(), utcnow(), 2, cursor)
    assert (page, again, has_more) == ([], cursor, False)
    # A change moves the issue to the end of the feed, where the cursor finds it.
    _act(session, settings, zone.users["d_super"], made[1], "accept")
    page, _, _ = list_issues(session, auditor, IssueFilters(), utcnow(), 2, cursor)
    assert [(i.id, i.version) for i in page] == [(made[1].id, 2)]


def test_an_empty_feed_still_hands_out_a_cursor(session, zone):
    page, cursor, has_more = list_issues(session, zone.users["auditor"], IssueFilters(), utcnow())
    assert page == [] and cursor and not has_more


def test_a_cursor_of_the_old_format_is_refused(session, settings, zone):
    """[updated_at, id] cursors (never released) would answer with a zone-wide position."""
    worker, auditor = zone.users["grid_worker"], zone.users["auditor"]
    made = [_report(session, settings, worker, n) for n in range(2)]
    old = json.dumps([made[1].updated_at.isoformat(), made[1].id]).encode()
    legacy = base64.urlsafe_b64encode(old).decode().rstrip("=")
    with pytest.raises(ValidationFailed):
        list_issues(session, auditor, IssueFilters(), utcnow(), 10, legacy)


def test_the_migration_numbers_existing_issues_in_their_old_order(database_url, settings, zone):
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        worker = zone.users["grid_worker"]
        made = [_report(session, settings, worker, n) for n in range(3)]
        _act(session, settings, zone.users["d_super"], made[0], "accept")
    config = alembic_config(database_url)
    command.downgrade(config, "0003")
    command.upgrade(config, "head")
    with Session(get_engine(database_url)) as session:
        assert _seqs(session) == {made[1].id: 1, made[2].id: 2, made[0].id: 3}
        counter = session.get(ChangeCounter, 1)
        assert counter is not None and counter.value == 3
        newest = session.exec(select(Issue).where(Issue.id == made[0].id)).scalar_one()
        assert counter.changed_at == newest.updated_at


# --- Concurrent writers --------------------------------------------------------------------


class _Writer(threading.Thread):
    """Reports, adds photos and moves issues along, committing after a random pause."""

    def __init__(self, settings: Settings, user_ids: dict[str, int], number: int, operations: int):
        super().__init__(name=f"writer-{number}")
        self.settings, self.user_ids = settings, user_ids
        self.number, self.operations = number, operations
        self.done, self.errors = 0, list[BaseException]()

    def run(self) -> None:
        rng = random.Random(self.number)
        with Session(get_engine(self.settings.database_url), expire_on_commit=False) as session:
            # Hold every transaction open a little after it took its number, so that commits
            # come late and out of order with respect to the clock.
            event.listen(session, "before_commit", lambda _s: time.sleep(rng.random() * 0.004))
            users = {name: session.get(User, user_id) for name, user_id in self.user_ids.items()}
            for n in range(self.operations):
                try:
                    self._one(session, users, rng, n)
                    self.done += 1
                except AppError:  # lost a race (version_conflict, invalid_transition): fine
                    session.rollback()
                except BaseException as exc:
                    self.errors.append(exc)
                    return

    def _one(self, session: Session, users: dict[str, Any], rng: random.Random, n: int) -> None:
        choice = rng.random()
        if choice < 0.2:
            _report(session, self.settings, users["grid_worker"], 1000 * self.number + n)
            return
        ids = session.exec(select(Issue.id)).scalars().all()
        issue = session.get(Issue, rng.choice(ids), populate_existing=True)
        session.rollback()  # end the read, so that the write below starts a fresh transaction
        assert issue is not None
        if choice < 0.4:
            blob = io.BytesIO(factories.jpeg(seed=5000 + n, width=96, height=72))
            reporting.add_photos(
                reporting.Caller(
                    session, self.settings, Storage(self.settings.upload_dir), users["grid_worker"]
                ),
                issue.id or 0,
                PhotoForm(kind=PhotoKind.BEFORE),
                reporting.Uploads({"files": [blob]}),
            )
        elif issue.status == "reported":
            _act(session, self.settings, users["d_super"], issue, "accept")
        elif issue.status == "accepted":
            _act(session, self.settings, users["d_super"], issue, "dispatch", org_unit="A")
        else:
            deadline = (issue.deadline_at or utcnow()) + timedelta(hours=1)
            _act(
                session,
                self.settings,
                users["d_super"],
                issue,
                "extend_deadline",
                deadline=deadline.isoformat(),
                note="延期",
            )


def _follow(session: Session, reader: User, cursor: str | None, seen: dict[int, tuple[int, int]]):
    """Read the feed to its current end; check that numbers only ever grow."""
    last = max((seq for _, seq in seen.values()), default=0)
    while True:
        page, cursor, has_more = list_issues(session, reader, IssueFilters(), utcnow(), 7, cursor)
        for issue in page:
            assert issue.change_seq > last, "the feed went backwards or repeated a change"
            last = issue.change_seq
            seen[issue.id or 0] = (issue.version, issue.change_seq)
        session.rollback()  # a fresh snapshot (and fresh rows) for the next page
        if not has_more:
            return cursor


@pytest.mark.parametrize("writers, operations", [(8, 30)])
def test_a_reader_following_the_cursor_misses_nothing(
    database_url, settings, session, zone, writers, operations
):
    if database_url.startswith("sqlite"):
        writers, operations = 3, 10  # SQLite serialises writers anyway: a lighter run
    Storage(settings.upload_dir).ensure_dirs()
    for n in range(6):
        _report(session, settings, zone.users["grid_worker"], n)
    reader = session.get(User, zone.users["auditor"].id)
    assert reader is not None
    user_ids = {name: user.id for name, user in zone.users.items()}
    threads = [_Writer(settings, user_ids, number, operations) for number in range(writers)]
    for thread in threads:
        thread.start()
    seen: dict[int, tuple[int, int]] = {}
    cursor = None
    while any(t.is_alive() for t in threads):
        cursor = _follow(session, reader, cursor, seen)
    for thread in threads:
        thread.join()
        assert not thread.errors, thread.errors
    cursor = _follow(session, reader, cursor, seen)

    truth = {i.id: (i.version, i.change_seq) for i in session.exec(select(Issue)).scalars()}
    assert seen == truth
    assert sum(t.done for t in threads) >= writers * operations // 2
