"""Signed photo links (app/routers/media.py, services/signing.py): served without a token,
refused when altered or expired, the same on every app of one database, and never handed out
expired by a 304."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

import app.deps
import app.etags
import app.routers.issues
import app.routers.media
from app.config import Settings
from app.main import create_app
from app.services import signing
from tests.factories import Zone, assert_problem, report

TTL = 3600
WINDOW = TTL // 2


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # ETags only on writes: what the links' window adds to them is seen alone.
    return Settings(
        database_url=database_url,
        upload_dir=tmp_path / "uploads",
        media_url_ttl_seconds=TTL,
        etag_clock_seconds=0,
    )


@pytest.fixture
def issue(client: TestClient, zone: Zone) -> dict[str, Any]:
    response = report(client, zone)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class Clock:
    """The server's clock as the links, the ETags and the routes read it, set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at: float | None = None  # None: the real clock
        real_now = app.deps.utcnow

        def now() -> datetime:
            return real_now() if self.at is None else datetime.fromtimestamp(self.at, UTC)

        for module in (app.deps, app.routers.issues, app.routers.media):
            monkeypatch.setattr(module, "utcnow", now)
        monkeypatch.setattr(app.etags, "time", SimpleNamespace(time=lambda: now().timestamp()))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    yield Clock(monkeypatch)


def anonymous(client: TestClient, url: str, **headers: str) -> Any:
    """A GET with no Authorization header at all (TestClient sends none by default)."""
    return client.get(url, headers=headers)


def expires_of(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["expires"][0])


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.path}?" + "&".join(f"{k}={v}" for k, v in query.items() if v != "")


# --- Serving ------------------------------------------------------------------------------


def test_a_signed_link_serves_the_same_bytes_as_the_token_route(client, zone, issue):
    [photo] = issue["photos"]
    for size in ("thumb", "large"):
        signed = anonymous(client, photo["urls"][f"{size}_signed"])
        assert signed.status_code == 200, signed.text
        assert signed.headers["content-type"] == "image/jpeg"
        with_token = client.get(photo["urls"][size], headers=zone.headers("viewer"))
        assert with_token.status_code == 200
        assert signed.content == with_token.content and signed.content.startswith(b"\xff\xd8")
        assert signed.headers["etag"] == with_token.headers["etag"] == f'"{photo["sha256"]}-{size}"'
        cache = signed.headers["cache-control"]
        assert cache.startswith("private, max-age=")
        max_age = int(cache.removeprefix("private, max-age="))
        assert TTL - WINDOW - 5 <= max_age <= TTL  # no longer than the link lives
        again = anonymous(
            client, photo["urls"][f"{size}_signed"], **{"If-None-Match": signed.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""


def test_every_photo_answer_carries_signed_links(client, zone, issue):
    photo_id = issue["photos"][0]["id"]
    headers = zone.headers("d_super")
    answers = [
        issue["photos"][0],
        client.get(f"/api/v1/issues/{issue['id']}", headers=headers).json()["photos"][0],
        client.get("/api/v1/issues", headers=headers).json()["items"][0]["photos"][0],
        client.get(f"/api/v1/photos/{photo_id}", headers=headers).json(),
    ]
    for answer in answers:
        for size in ("thumb", "large"):
            url = answer["urls"][f"{size}_signed"]
            assert url.startswith(f"/media/photos/{photo_id}/{size}.jpg?expires=")
            assert url == answers[0]["urls"][f"{size}_signed"]  # one window, the same links
    # The evidence is a record kept: the same state gives the same bytes, so no links in it.
    evidence = client.get(f"/api/v1/issues/{issue['id']}/evidence", headers=headers).json()
    assert evidence["photos"][0]["urls"]["thumb_signed"] is None
    assert evidence["issue"]["photos"][0]["urls"]["large_signed"] is None


def test_originals_have_no_signed_link(client, issue):
    photo = issue["photos"][0]
    assert "original_signed" not in photo["urls"]
    forged = photo["urls"]["thumb_signed"].replace("/thumb.jpg", "/original.jpg")
    assert_problem(anonymous(client, forged), 422, "validation_error")


# --- Bad links ----------------------------------------------------------------------------


def test_altered_links_are_refused_in_chinese_or_english(client, issue):
    photo = issue["photos"][0]
    url = photo["urls"]["thumb_signed"]
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    other_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    altered = [
        with_query(url, sig=other_sig),
        with_query(url, sig=sig.upper()),
        with_query(url, sig="x"),
        with_query(url, sig="签名" + sig[2:]),  # not ASCII: refused, not a 500
        with_query(url, expires=str(expires_of(url) + 86_400)),  # a longer life
        url.replace(f"/photos/{photo['id']}/", f"/photos/{photo['id'] + 1}/"),  # another photo
        url.replace("/thumb.jpg", "/large.jpg"),  # another size
    ]
    for bad in altered:
        body = assert_problem(anonymous(client, bad), 403, "signature_invalid")
        assert body["title"] == "链接签名无效" and "签名" in body["detail"]
    english = anonymous(client, altered[0], **{"Accept-Language": "en"})
    assert assert_problem(english, 403, "signature_invalid")["title"] == (
        "The link's signature is not valid"
    )
    legacy = f"/open311/v2/media/{photo['id']}/thumb.jpg?{urlsplit(altered[0]).query}"
    assert anonymous(client, legacy).status_code == 403  # the spec's error list (tests/live)
    legacy_unicode = f"/open311/v2/media/{photo['id']}/thumb.jpg?{urlsplit(altered[3]).query}"
    assert anonymous(client, legacy_unicode).status_code == 403
    # A token changes nothing: the link is judged alone.
    assert_problem(client.get(altered[0]), 403, "signature_invalid")


def test_links_missing_or_malformed_parts_are_validation_errors(client, issue):
    url = issue["photos"][0]["urls"]["large_signed"]
    for bad in (
        with_query(url, sig=""),
        with_query(url, expires=""),
        urlsplit(url).path,
        with_query(url, expires="soon"),
        with_query(url, expires="-5"),
        with_query(url, sig="a" * 129),
        url.replace("/large.jpg", "/huge.jpg"),
        url.replace("/large.jpg", "/large.png"),
    ):
        response = anonymous(client, bad)
        assert response.status_code in (404, 422), (bad, response.status_code)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert_problem(anonymous(client, with_query(url, expires="soon")), 422, "validation_error")
    assert_problem(anonymous(client, urlsplit(url).path), 422, "validation_error")
    no_id = f"/media/photos/0/large.jpg?{urlsplit(url).query}"
    assert_problem(anonymous(client, no_id), 422, "validation_error")


def test_a_signed_link_to_no_photo_is_not_found(client, issue):
    signer = client.app.state.signer
    url = signer.links(datetime.now(UTC)).url(999_999, "thumb")
    assert_problem(anonymous(client, url), 404, "not_found")


def test_a_link_works_until_it_expires_then_is_refused(client, clock, issue):
    url = issue["photos"][0]["urls"]["thumb_signed"]
    expires = expires_of(url)
    clock.at = expires - 1
    assert anonymous(client, url).status_code == 200
    clock.at = expires
    body = assert_problem(anonymous(client, url), 403, "link_expired")
    assert body["title"] == "链接已过期"
    clock.at = expires + 86_400 * 365
    english = anonymous(client, url, **{"Accept-Language": "en-GB"})
    assert assert_problem(english, 403, "link_expired")["title"] == "The link has expired"
    # An old link re-signed is not a way around it: only a new answer gives a new link.
    stale = client.app.state.signer.links(datetime.now(UTC) - timedelta(days=3)).url(
        issue["photos"][0]["id"], "thumb"
    )
    clock.at = None
    assert_problem(anonymous(client, stale), 403, "link_expired")


# --- The key: every app of one database signs alike --------------------------------------


def test_the_key_survives_a_restart_and_is_shared_by_apps_with_other_folders(
    settings, zone, tmp_path
):
    with TestClient(create_app(settings)) as first:
        issue = report(first, zone).json()
        url = issue["photos"][0]["urls"]["thumb_signed"]
        image = anonymous(first, url).content
    other = settings.model_copy(update={"upload_dir": tmp_path / "elsewhere"})
    assert not (other.upload_dir / signing.LEGACY_KEY_FILE).exists()
    with TestClient(create_app(settings)) as restarted, TestClient(create_app(other)) as replica:
        again = restarted.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("viewer"))
        assert again.json()["photos"][0]["urls"]["thumb_signed"] == url
        seen = replica.get(f"/api/v1/issues/{issue['id']}", headers=zone.headers("viewer"))
        assert seen.json()["photos"][0]["urls"]["thumb_signed"] == url
        # The replica has no file of this photo, but it checks the first app's signature:
        # the refusal is about the missing file (404), not the link (403).
        assert_problem(anonymous(replica, url), 404, "not_found")
        assert anonymous(restarted, url).content == image
    assert signing.load_signer(settings).key == signing.load_signer(other).key


def test_an_earlier_key_file_is_adopted_so_links_handed_out_stay_valid(settings, zone):
    settings.upload_dir.mkdir(parents=True)
    (settings.upload_dir / signing.LEGACY_KEY_FILE).write_text("ab" * 32 + "\n")
    with TestClient(create_app(settings)) as client:
        issue = report(client, zone).json()
        photo_id = issue["photos"][0]["id"]
        # A link as the earlier release made it: HMAC with the file's text, expiry of its own.
        old = signing.Signer(("ab" * 32).encode(), TTL)
        expires = int(datetime.now(UTC).timestamp()) + 600
        sig = old.signature(photo_id, "large", expires)
        legacy = f"/open311/v2/media/{photo_id}/large.jpg?expires={expires}&sig={sig}"
        assert anonymous(client, legacy).status_code == 200
        assert (
            anonymous(
                client, f"/media/photos/{photo_id}/large.jpg?expires={expires}&sig={sig}"
            ).status_code
            == 200
        )
    # The file is adopted once; the database keeps the key even if the file goes.
    (settings.upload_dir / signing.LEGACY_KEY_FILE).unlink()
    assert signing.load_signer(settings).key == ("ab" * 32).encode()


def test_a_configured_secret_is_used_as_it_is(settings):
    configured = settings.model_copy(update={"signing_secret": "from-the-environment"})
    signer = signing.load_signer(configured)
    assert signer.key == b"from-the-environment"
    assert signing.load_signer(settings).key != signer.key  # the database's own


# --- ETags: a 304 never confirms links that have expired ----------------------------------


def _window_start(k: int) -> int:
    return k * WINDOW


def test_the_api_etags_change_with_the_links_window(client, zone, issue, clock):
    headers = zone.headers("viewer")
    first = client.get("/api/v1/issues", headers=headers)
    url = first.json()["items"][0]["photos"][0]["urls"]["thumb_signed"]
    k = signing.window_of(TTL, datetime.now(UTC).timestamp())
    assert expires_of(url) == _window_start(k) + TTL
    tag = first.headers["etag"]
    # Later in the same window: nothing changed, 304, and the copy's links still hold.
    clock.at = _window_start(k + 1) - 1
    again = client.get("/api/v1/issues", headers={**headers, "If-None-Match": tag})
    assert again.status_code == 304
    assert expires_of(url) - clock.at >= TTL - WINDOW
    assert anonymous(client, url).status_code == 200
    # The next window: a new tag and new links, though no write happened.
    clock.at = _window_start(k + 1)
    renewed = client.get("/api/v1/issues", headers={**headers, "If-None-Match": tag})
    assert renewed.status_code == 200 and renewed.headers["etag"] != tag
    new_url = renewed.json()["items"][0]["photos"][0]["urls"]["thumb_signed"]
    assert expires_of(new_url) == _window_start(k + 1) + TTL
    assert anonymous(client, url).status_code == 200  # the old links outlive their window
    clock.at = _window_start(k + 2)
    assert_problem(anonymous(client, url), 403, "link_expired")
    assert anonymous(client, new_url).status_code == 200


def test_one_issue_answers_304_only_while_its_links_are_the_current_ones(
    client, zone, issue, clock
):
    headers = zone.headers("viewer")
    path = f"/api/v1/issues/{issue['id']}"
    first = client.get(path, headers=headers)
    tag = first.headers["etag"]
    assert tag == f'"{issue["version"]}"'  # the contract's tag, unchanged
    url = first.json()["photos"][0]["urls"]["large_signed"]
    k = signing.window_of(TTL, datetime.now(UTC).timestamp())
    clock.at = _window_start(k + 1) - 1
    assert client.get(path, headers={**headers, "If-None-Match": tag}).status_code == 304
    clock.at = _window_start(k + 1)
    renewed = client.get(path, headers={**headers, "If-None-Match": tag})
    assert renewed.status_code == 200 and renewed.headers["etag"] == tag
    new_url = renewed.json()["photos"][0]["urls"]["large_signed"]
    assert expires_of(new_url) == _window_start(k + 1) + TTL > expires_of(url)
