"""Signed, expiring photo links: `<img src>` on our pages and Open311's media_url, no token.

A link is `/media/photos/{id}/{size}.jpg?expires=<Unix seconds>&sig=<hex>`, size `thumb` or
`large` (originals stay behind the token and the evidence permissions), with
sig = HMAC-SHA256(key, "{id}:{size}:{expires}"). The Open311 path of earlier releases,
/open311/v2/media/{id}/{size}.jpg, takes the same query. A bad signature is 403
`signature_invalid`, a good one past its time 403 `link_expired`.

The key: GRIDPROOF_SIGNING_SECRET, else the `photo_links` row of app_secrets, made once by the
first process that needs it (services/app_secrets.py), so that replicas sharing no file system
sign alike; an upload_dir/signing.key of an earlier release is adopted as that row's value, so
that links already handed out stay valid. Each app reads it once, at startup (`load_signer`).

Expiry is deterministic, so that answers stay cacheable. Time is cut into windows of
W = ttl // 2 seconds from the epoch (ttl: GRIDPROOF_MEDIA_URL_TTL_SECONDS); every link made in
window k expires at k·W + ttl. Every answer made in one window carries the same links (the
same bytes), and each link lives at least ttl − W (about ttl/2) and at most ttl.

A 304 never confirms a copy whose links have expired:
- The API's ETags (app/etags.py, `clock_key`) include the window number, read before the route
  runs (which reads its own clock later, so its links are never older than the tag). A tag
  made in window k no longer matches in window k+1: a 304 confirms only links made in the
  current window, which live at least ttl − W more.
- GET /api/v1/issues/{id}, whose tag is "<version>" by contract, answers 304 only while the
  issue's last change (`updated_at`) lies in the current window (`fresh_since`): every copy of
  that version was made after that change, so in this window, with the links it would send
  now. An older version gets a 200 with fresh links.
- Answers carry Cache-Control: no-cache, so clients ask before reusing one; the image itself is
  cached privately until its link expires (`max-age`).
Replicas' clocks must agree (NTP): a skew of s seconds shortens a link's life by up to s.
"""

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from sqlmodel import Session

from app.config import Settings
from app.db import get_engine
from app.errors import LinkExpired, SignatureInvalid
from app.services import app_secrets

SECRET_NAME = "photo_links"
# Where releases before the key moved to the database kept it.
LEGACY_KEY_FILE = "signing.key"
LINK_PREFIX = "/media/photos"


@dataclass(frozen=True)
class SignedLink:
    """What a link's path and query say."""

    photo_id: int
    size: str
    expires: int
    sig: str


def window_of(ttl_seconds: int, at: float) -> int:
    """The number of the expiry window that Unix time `at` falls in (see the module docstring)."""
    return int(at // max(1, ttl_seconds // 2))


@dataclass(frozen=True)
class Signer:
    key: bytes
    ttl_seconds: int

    def window(self, moment: datetime) -> int:
        return window_of(self.ttl_seconds, moment.timestamp())

    def links(self, now: datetime, base_url: str = "") -> "PhotoLinks":
        """The links of photos for an answer made now (all with one expiry)."""
        return PhotoLinks(self, self.window(now), base_url)

    def fresh_since(self, changed_at: datetime, now: datetime) -> bool:
        """Whether every copy made after `changed_at` has the links one made now would have."""
        return self.window(changed_at) == self.window(now)

    def signature(self, photo_id: int, size: str, expires: int) -> str:
        message = f"{photo_id}:{size}:{expires}".encode()
        return hmac.digest(self.key, message, "sha256").hex()  # the one-shot C path

    def check(self, link: SignedLink, now: datetime) -> None:
        """SignatureInvalid unless we signed exactly this; LinkExpired once it has expired."""
        expected = self.signature(link.photo_id, link.size, link.expires)
        # As bytes: compare_digest refuses str with non-ASCII characters (a fuzzer sends them).
        if not hmac.compare_digest(expected.encode(), link.sig.encode()):
            raise SignatureInvalid(
                "The link's signature does not match: it was altered or not made here",
                zh="链接签名不符：链接被改动过，或不是本系统签发的",
            )
        if now.timestamp() >= link.expires:
            raise LinkExpired(
                "The link has expired: load the page or the answer again for a new one",
                zh="链接已过期：请重新打开页面或重新获取数据以得到新链接",
            )


@dataclass(frozen=True)
class PhotoLinks:
    """Links made in one window; `base_url` makes them absolute (Open311)."""

    signer: Signer
    window: int
    base_url: str = ""

    # Worked out once: a list page signs ~300 links.
    @cached_property
    def expires(self) -> int:
        return self.window * max(1, self.signer.ttl_seconds // 2) + self.signer.ttl_seconds

    def url(self, photo_id: int, size: str) -> str:
        expires = self.expires
        sig = self.signer.signature(photo_id, size, expires)
        return f"{self.base_url}{LINK_PREFIX}/{photo_id}/{size}.jpg?expires={expires}&sig={sig}"


def load_signer(settings: Settings) -> Signer:
    """The signer of this deployment: the configured secret, else the one in the database."""
    if settings.signing_secret:
        return Signer(settings.signing_secret.encode(), settings.media_url_ttl_seconds)
    with Session(get_engine(settings.database_url)) as session:
        value = app_secrets.shared_secret(session, SECRET_NAME, lambda: _first_key(settings))
    return Signer(value.encode(), settings.media_url_ttl_seconds)


def _first_key(settings: Settings) -> str:
    """An earlier release's key file, if this server has one; else a new random key."""
    legacy = Path(settings.upload_dir) / LEGACY_KEY_FILE
    if legacy.is_file():
        adopted = legacy.read_text().strip()
        if adopted:
            return adopted
    return secrets.token_hex(32)
