"""Photo derivatives shown by signed links (services/signing.py): no token, no session user.

`derivative_file` is the one place that reads a derivative for these links: the storage
backend behind it may change, the routes do not.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from app.errors import NotFound
from app.models import Photo
from app.services.signing import SignedLink, Signer
from app.services.storage import Storage


@dataclass(frozen=True)
class SignedDerivative:
    path: Path
    sha256: str
    # Seconds the link has left: how long a browser may keep the image without asking.
    max_age: int


def signed_derivative(
    session: Session,
    storage: Storage,
    signer: Signer,
    link: SignedLink,
    now: datetime,
) -> SignedDerivative:
    """The derivative a link names, once its signature and time are checked (403), or 404."""
    signer.check(link, now)
    photo = session.get(Photo, link.photo_id)
    if photo is None:
        raise NotFound(f"No photo {link.photo_id}", zh=f"没有照片 {link.photo_id}")
    path = derivative_file(storage, photo.sha256, link.size)
    max_age = max(0, link.expires - int(now.timestamp()))
    return SignedDerivative(path, photo.sha256, max_age)


def derivative_file(storage: Storage, sha256: str, size: str) -> Path:
    """The stored derivative of these bytes (404 when the file is missing)."""
    path = storage.derivative_path(sha256, size)
    if not path.is_file():
        raise NotFound(
            "The stored file is missing; run `gridproof verify`",
            zh="存储的文件缺失，请运行 `gridproof verify`",
        )
    return path
