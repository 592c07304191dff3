"""Security headers on every answer: pages, JSON, images and errors alike (issue 17, item 6).

`SecurityHeaders` (pure ASGI, around the whole app) adds to every HTTP answer that lacks them:
`Content-Security-Policy` (`DEFAULT_CSP`; the pages send their own, narrowed to what each
needs), `Referrer-Policy: no-referrer` and `X-Content-Type-Options: nosniff`. Every script a
page runs is served from here (app/web/vendor/, fastapi-offline for /docs and /redoc), so no
policy names another host for scripts; images may come from `data:` and `blob:` URLs (the phone
app shows photos from blobs of authenticated fetches) and from our own origin (`'self'`: the
signed photo links, /media/photos/…, that the auditor's page and the dashboard use).
"""

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# For every answer without its own policy (JSON, photos, scripts, the service worker, errors).
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_ADDED = (
    ("content-security-policy", DEFAULT_CSP),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
)


def page_csp(*, image_origins: tuple[str, ...] = ()) -> str:
    """The policy of a page of ours: only our own scripts, styles and connections; images also
    from `image_origins` (a configured tile server)."""
    images = " ".join(("'self'", "data:", "blob:", *image_origins))
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def template_origin(url_template: str) -> str | None:
    """The CSP source of a tile URL template: `https://t{s}.example.cn/…` → `https://*.example.cn`."""
    if not url_template:
        return None
    parts = urlsplit(url_template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    first, _, rest = parts.netloc.partition(".")
    if "{" in rest:
        return None  # CSP wildcards stand only for the leftmost label: the page shows no tiles
    return f"{parts.scheme}://{'*' if '{' in first else first}{'.' if rest else ''}{rest}"


class SecurityHeaders:
    """Pure ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ADDED:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
