"""Signed, expiring URLs for photos shown to other systems (Open311 media_url).

sig = HMAC-SHA256(secret, f"{photo_id}:{size}:{expires}"), hex; the URL carries `expires`
(Unix seconds) and `sig`. The secret is GRIDPROOF_SIGNING_SECRET, else a random key made once
in the upload folder (so that every process of one server signs alike).
"""

import hashlib
import hmac
import os
import secrets
from datetime import datetime
from pathlib import Path

from app.config import Settings
from app.errors import Forbidden

KEY_FILE = "signing.key"


def secret(settings: Settings) -> bytes:
    if settings.signing_secret:
        return settings.signing_secret.encode()
    path = Path(settings.upload_dir) / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _signature(settings: Settings, photo_id: int, size: str, expires: int) -> str:
    message = f"{photo_id}:{size}:{expires}".encode()
    return hmac.new(secret(settings), message, hashlib.sha256).hexdigest()


def media_path(settings: Settings, photo_id: int, now: datetime, size: str = "large") -> str:
    """The path and query of a signed URL of the photo's derivative, valid for the TTL."""
    expires = int(now.timestamp()) + settings.media_url_ttl_seconds
    sig = _signature(settings, photo_id, size, expires)
    return f"/open311/v2/media/{photo_id}/{size}.jpg?expires={expires}&sig={sig}"


def check_media(
    settings: Settings, photo_id: int, size: str, expires: int, sig: str, now: datetime
) -> None:
    """Forbidden unless the signature is ours and has not expired."""
    expected = _signature(settings, photo_id, size, expires)
    if not hmac.compare_digest(expected, sig):
        raise Forbidden("签名无效")
    if now.timestamp() > expires:
        raise Forbidden("链接已过期")
