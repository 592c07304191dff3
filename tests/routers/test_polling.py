"""Conditional GETs: an ETag on every GET of the API, 304 without running the route."""

import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from starlette.routing import Mount, Route

from app import etags
from app.config import Settings
from app.main import create_app
from app.routers import dashboard_page, pages
from app.routers import issues as issues_router
from app.services import changes, orgs
from tests.factories import act, add_photos, assert_problem, rectified_issue, report


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # No clock in the ETags here, so that a test never straddles a rollover.
    uploads = tmp_path / "uploads"
    return Settings(database_url=database_url, upload_dir=uploads, etag_clock_seconds=0)


@pytest.fixture
def issue(client, zone):
    response = report(client, zone)
    assert response.status_code == 201, response.text
    return response.json()


def _paths(issue):
    return [
        "/api/v1/issues",
        "/api/v1/issues?status=reported&limit=10",
        "/api/v1/issues.geojson",
        "/api/v1/categories",
        "/api/v1/org-units",
        "/api/v1/auth/me",
        f"/api/v1/photos/{issue['photos'][0]['id']}",
        f"/api/v1/issues/{issue['id']}/events",
    ]


def test_every_get_answers_if_none_match_with_304(client, zone, issue):
    headers = zone.headers("grid_worker")
    for path in _paths(issue):
        first = client.get(path, headers=headers)
        assert first.status_code == 200, (path, first.text)
        etag = first.headers["etag"]
        assert etag.startswith('"c') and first.headers["cache-control"] == "no-cache"
        assert "Authorization" in first.headers["vary"]
        again = client.get(path, headers={**headers, "If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b"" and again.headers["etag"] == etag
        assert again.headers["cache-control"] == "no-cache"
        weak = client.get(path, headers={**headers, "If-None-Match": f'"x", W/{etag}'})
        assert weak.status_code == 304, path


def test_a_304_reads_one_row_and_never_reaches_the_route(client, zone, issue, monkeypatch):
    headers = zone.headers("viewer")
    etag = client.get("/api/v1/issues", headers=headers).headers["etag"]

    def heavy(*_args, **_kwargs):
        raise AssertionError("the list query ran for a 304")

    monkeypatch.setattr(issues_router, "list_issues", heavy)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT")):
            statements.append(statement)

    # Every engine of the process (the revalidation has its own on PostgreSQL).
    event.listen(Engine, "before_cursor_execute", count)
    try:
        response = client.get("/api/v1/issues", headers={**headers, "If-None-Match": etag})
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert response.status_code == 304
    assert len(statements) == 1, statements


def test_a_first_get_reads_token_and_change_number_in_one_query(client, zone, issue):
    headers = zone.headers("viewer")
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        response = client.get("/api/v1/categories", headers=headers)
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert response.status_code == 200 and response.headers["etag"].startswith('"c')
    lookups = [s for s in statements if "api_tokens" in s]
    assert len(lookups) == 1 and "change_counter" in lookups[0], statements
    # The same ETag as a revalidation computes from its own query: the next poll gets a 304.
    again = client.get(
        "/api/v1/categories", headers={**headers, "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


def test_reads_never_wait_for_a_writer(client, zone, issue, database_url):
    """A dashboard's GETs answer while a writer is mid-transaction: on SQLite it holds the write
    lock (GETs read in a deferred transaction), on PostgreSQL the counter and issue rows."""
    if database_url.startswith("sqlite"):
        writer = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        writer.execute("BEGIN IMMEDIATE")
    else:
        writer = psycopg.connect(database_url.replace("+psycopg", ""))
        writer.execute("UPDATE change_counter SET value = value + 1")
        writer.execute("UPDATE issues SET version = version + 1")
    try:
        started = time.monotonic()
        for path in ("/api/v1/issues", "/api/v1/stats", f"/api/v1/issues/{issue['id']}"):
            assert client.get(path, headers=zone.headers("d_super")).status_code == 200, path
        # SQLite's busy timeout is 30 s: a read that needed the lock would still be waiting.
        assert time.monotonic() - started < 20
    finally:
        writer.rollback()
        writer.close()


def test_the_etag_changes_after_every_write(client, zone, issue, session):
    headers = zone.headers("d_super")

    def etag(path="/api/v1/issues"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200
        return response.headers["etag"]

    seen = [etag()]
    issue = act(client, zone, "d_super", issue, "dispatch", org_unit="A").json()
    seen.append(etag())
    assert add_photos(client, zone, "a_worker", issue["id"], "after").status_code == 201
    seen.append(etag())
    assert report(client, zone).status_code == 201
    seen.append(etag())
    assert len(set(seen)) == len(seen)
    stale = client.get("/api/v1/issues", headers={**headers, "If-None-Match": seen[0]})
    assert stale.status_code == 200 and stale.headers["etag"] == seen[-1]

    before = etag("/api/v1/org-units")
    orgs.add_org(session, "B2", "新社区", "community", "B")
    assert etag("/api/v1/org-units") != before


def test_a_failed_write_keeps_the_etag(client, zone, issue):
    headers = zone.headers("d_super")
    before = client.get("/api/v1/issues", headers=headers).headers["etag"]
    assert act(client, zone, "d_super", issue, "reject").status_code == 422  # no note
    after = client.get("/api/v1/issues", headers={**headers, "If-None-Match": before})
    assert after.status_code == 304


def test_users_and_queries_never_share_an_etag(client, zone, issue):
    a = client.get("/api/v1/issues", headers=zone.headers("a_super"))
    b = client.get("/api/v1/issues", headers=zone.headers("b_super"))
    assert a.json()["items"] != b.json()["items"]  # different scope, different answers
    assert a.headers["etag"] != b.headers["etag"]
    borrowed = client.get(
        "/api/v1/issues", headers=zone.headers("b_super", **{"If-None-Match": a.headers["etag"]})
    )
    assert borrowed.status_code == 200
    filtered = client.get("/api/v1/issues?category=banner", headers=zone.headers("a_super"))
    assert filtered.headers["etag"] != a.headers["etag"]


def test_a_revoked_token_gets_401_not_304(client, zone, issue):
    headers = zone.headers("viewer")
    etag = client.get("/api/v1/categories", headers=headers).headers["etag"]
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    response = client.get("/api/v1/categories", headers={**headers, "If-None-Match": etag})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "etag" not in response.headers


def test_errors_carry_no_etag(client, zone):
    response = client.get("/api/v1/issues/999999", headers=zone.headers("viewer"))
    assert response.status_code == 404 and "etag" not in response.headers


def test_one_issue_and_photo_files_keep_their_own_etags(client, zone, issue):
    headers = zone.headers("grid_worker")
    one = client.get(f"/api/v1/issues/{issue['id']}", headers=headers)
    assert one.headers["etag"] == f'"{issue["version"]}"'
    assert (
        client.get(
            f"/api/v1/issues/{issue['id']}",
            headers={**headers, "If-None-Match": one.headers["etag"]},
        ).status_code
        == 304
    )
    photo = issue["photos"][0]
    thumb = client.get(photo["urls"]["thumb"], headers=headers)
    assert thumb.headers["etag"] == f'"{photo["sha256"]}-thumb"'
    assert "immutable" in thumb.headers["cache-control"]


def test_an_answer_is_labelled_with_the_clock_read_before_the_route_ran(
    database_url, tmp_path, zone, monkeypatch
):
    """An answer computed in one clock interval is labelled with that interval even when the
    next one has begun by the time it is sent; the next poll then gets the new answer."""
    settings = Settings(
        database_url=database_url, upload_dir=tmp_path / "uploads", etag_clock_seconds=60
    )
    clock = {"now": 1000.0}  # interval 16 (960–1019 s)
    monkeypatch.setattr(etags.time, "time", lambda: clock["now"])
    real_list = issues_router.list_issues

    def slow_list(*args, **kwargs):
        clock["now"] = 1030.0  # interval 17 begins while the route runs
        return real_list(*args, **kwargs)

    monkeypatch.setattr(issues_router, "list_issues", slow_list)
    with TestClient(create_app(settings)) as client:
        headers = zone.headers("viewer")
        first = client.get("/api/v1/issues", headers=headers)
        assert first.status_code == 200
        monkeypatch.setattr(issues_router, "list_issues", real_list)
        again = client.get(
            "/api/v1/issues", headers={**headers, "If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 200  # labelled interval 16; it is 17 now
        clock["now"] = 1035.0
        third = client.get(
            "/api/v1/issues", headers={**headers, "If-None-Match": again.headers["etag"]}
        )
        assert third.status_code == 304


def test_etags_roll_over_with_the_clock():
    state = changes.Revalidation(user_id=1, role="viewer", org_unit_id=1, change=7)
    target = "/api/v1/stats?"
    assert etags.etag_for(state, target, 1) != etags.etag_for(state, target, 2)
    assert etags.etag_for(state, target, 1) == etags.etag_for(state, target, 1)
    assert etags.clock_bucket(Settings(etag_clock_seconds=0)) == 0
    assert etags.clock_bucket(Settings(etag_clock_seconds=60)) > 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_get_after_a_database_restart_is_retryable_and_the_retry_works(
    client, zone, issue, database_url
):
    headers = zone.headers("viewer")
    assert client.get("/api/v1/issues", headers=headers).status_code == 200
    # What a restart does to the pooled connections: the server ends them.
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    lost = client.get("/api/v1/issues", headers=headers)
    assert_problem(lost, 503, "database_unavailable")
    assert lost.headers["retry-after"] == "1"
    assert client.get("/api/v1/issues", headers=headers).status_code == 200


# --- Every GET of the application, not a list kept by hand -----------------------------------

# Answers that are never revalidated: health checks, redirects and FastAPI's documentation.
NO_ETAG = {"/healthz", "/readyz", "/", "/m", "/docs", "/docs/oauth2-redirect", "/redoc"}
NO_ETAG |= {"/openapi.json"}


def _every_get(client, issue):
    """One URL for each GET of the app, with its route: the API's from its OpenAPI document,
    the pages' from their routers, FastAPI's own and the static mount from the app's routes."""
    values = {"issue_id": issue["id"], "photo_id": issue["photos"][-1]["id"], "name": "app.js"}
    # Open311 answers in its own formats and needs an api_key, webhooks are for admins: both
    # are tested live (tests/live).
    apart = ("/open311/", "/api/v1/webhooks")
    paths = client.app.openapi()["paths"].items()
    routes = [(p, p) for p, ops in paths if "get" in ops and not p.startswith(apart)]
    queries = {"/nearby": "?lat=34.75&lon=113.78", "/rankings/history": "?org_unit=A"}
    routes = [
        (r, p + next((q for end, q in queries.items() if p.endswith(end)), "")) for r, p in routes
    ]
    for route in [*pages.router.routes, *dashboard_page.router.routes, *client.app.routes]:
        if isinstance(route, Route) and "GET" in (route.methods or ()):
            routes.append((route.path, route.path_format))
        elif isinstance(route, Mount):
            root = Path(route.app.directory)  # type: ignore[attr-defined]
            files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            routes += [(route.path, f"{route.path}/{name}") for name in files]
    # A signed photo link carries its signature: the one the issue's answer gave.
    signed = {"/media/photos/{photo_id}/{size}.jpg": issue["photos"][-1]["urls"]["thumb_signed"]}
    for route, path in routes:
        yield route, signed.get(route) or path.format(**values)


def test_every_get_that_sends_an_etag_answers_if_none_match_with_it(client, zone):
    issue = rectified_issue(client, zone)
    headers = zone.headers("d_super")  # sees every issue, reads originals and evidence
    routes_seen, without_etag = set(), set()
    for route, path in _every_get(client, issue):
        routes_seen.add(route)
        first = client.get(path, headers=headers, follow_redirects=False)
        assert first.status_code in (200, 307), (path, first.status_code, first.text[:200])
        etag = first.headers.get("etag")
        if etag is None:
            without_etag.add(route)
            continue
        for if_none_match in (etag, f'"other", {etag}', f"W/{etag}", "*"):
            again = client.get(path, headers={**headers, "If-None-Match": if_none_match})
            assert again.status_code == 304, (path, if_none_match, again.status_code)
            assert again.content == b"" and again.headers["etag"] == etag, path
        assert client.get(path, headers={**headers, "If-None-Match": '"other"'}).status_code == 200
    assert without_etag == NO_ETAG & routes_seen, without_etag
    assert {"/api/v1/issues/{issue_id}/comparison.jpg", "/dashboard"} <= routes_seen
    assert len(routes_seen) >= 28


def test_if_none_match_star_is_answered_by_the_route(client, zone, issue):
    headers = zone.headers("viewer", **{"If-None-Match": "*"})
    assert client.get("/api/v1/issues/999999", headers=headers).status_code == 404
    listed = client.get("/api/v1/categories", headers=headers)
    assert listed.status_code == 304 and listed.content == b"" and listed.headers["etag"]
    one = client.get(f"/api/v1/issues/{issue['id']}", headers=headers)
    assert one.status_code == 304 and one.headers["etag"] == f'"{issue["version"]}"'


def test_an_answer_in_one_language_is_not_revalidated_for_the_other(client, zone, issue):
    """Texts for people follow Accept-Language (flag notes, titles…): a tag is per language."""
    headers = zone.headers("grid_worker")
    zh = client.get("/api/v1/issues", headers=headers)
    en = client.get("/api/v1/issues", headers={**headers, "Accept-Language": "en"})
    assert zh.status_code == en.status_code == 200
    assert zh.headers["etag"] != en.headers["etag"]
    for answer in (zh, en):
        assert "Accept-Language" in answer.headers["vary"]
    asked_en = {**headers, "Accept-Language": "en-GB,en;q=0.9"}
    stale = client.get("/api/v1/issues", headers={**asked_en, "If-None-Match": zh.headers["etag"]})
    assert stale.status_code == 200 and stale.headers["etag"] == en.headers["etag"]
    same = client.get("/api/v1/issues", headers={**asked_en, "If-None-Match": en.headers["etag"]})
    assert same.status_code == 304 and "Accept-Language" in same.headers["vary"]
