"""Photo derivatives by signed, expiring links (services/signing.py): for `<img src>`, no token.

The links are in every photo answer (`urls.thumb_signed`, `urls.large_signed`) and in Open311's
media_url. Originals are not served here: they stay behind the token and the evidence rules.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from app import etags
from app.deps import PhotoId, SessionDep, SignerDep, StoreDep
from app.errors import LinkExpired, NotFound, SignatureInvalid, ValidationFailed
from app.models.base import utcnow
from app.openapi import NOT_MODIFIED, file_response, merge, problem_responses
from app.services import media
from app.services.signing import LINK_PREFIX, SignedLink

router = APIRouter(prefix=LINK_PREFIX, tags=["photos"])

Size = Literal["thumb", "large"]
Expires = Annotated[int, Query(ge=0, le=2**40, description="Unix seconds, as signed")]
Signature = Annotated[str, Query(min_length=1, max_length=128, description="hex HMAC-SHA256")]
ANSWERS = merge(
    file_response("JPEG, upright, no EXIF", "image/jpeg"),
    NOT_MODIFIED,
    problem_responses(SignatureInvalid, LinkExpired, NotFound, ValidationFailed),
)


@router.get("/{photo_id}/{size}.jpg", response_class=Response, responses=ANSWERS)
def signed_photo(
    photo_id: PhotoId,
    size: Size,
    expires: Expires,
    sig: Signature,
    request: Request,
    session: SessionDep,
    store: StoreDep,
    signer: SignerDep,
) -> Response:
    """A photo's thumb or large by a signed link (no token; 403 when altered or expired)."""
    link = SignedLink(photo_id, size, expires, sig)
    return derivative_response(request, session, store, signer, link)


def derivative_response(
    request: Request, session: SessionDep, store: StoreDep, signer: SignerDep, link: SignedLink
) -> Response:
    """The answer of a signed link: also the Open311 media route's (app/routers/open311.py)."""
    found = media.signed_derivative(session, signer, link, utcnow())
    etag = etags.photo_etag(found.sha256, link.size)
    headers = {"Cache-Control": f"private, max-age={found.max_age}"}
    sent = etags.not_modified(request, etag, headers) or etags.send_object(
        store, found.key, etag, "image/jpeg", headers
    )
    if sent is None:
        raise NotFound(
            "The stored file is missing; run `gridproof verify`",
            zh="存储的文件缺失，请运行 `gridproof verify`",
        )
    return sent
