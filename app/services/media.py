"""Photo derivatives shown by signed links (services/signing.py): no token, no session user."""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from app.errors import NotFound
from app.models import Photo
from app.services.objects import derivative_key
from app.services.signing import SignedLink, Signer


@dataclass(frozen=True)
class SignedDerivative:
    key: str  # the derivative's key in the object store
    sha256: str
    # Seconds the link has left: how long a browser may keep the image without asking.
    max_age: int


def signed_derivative(
    session: Session, signer: Signer, link: SignedLink, now: datetime
) -> SignedDerivative:
    """The derivative a link names, once its signature and time are checked (403), or 404."""
    signer.check(link, now)
    photo = session.get(Photo, link.photo_id)
    if photo is None:
        raise NotFound(f"No photo {link.photo_id}", zh=f"没有照片 {link.photo_id}")
    max_age = max(0, link.expires - int(now.timestamp()))
    return SignedDerivative(derivative_key(photo.sha256, link.size), photo.sha256, max_age)
