"""The OpenAPI document says what the API really answers; /docs and /redoc work offline.

Each route lists the AppError classes it can raise and `problem_responses` turns them into its
`responses=`: one entry per status, `application/problem+json` with the one shared schema
`Problem` and the `code`s that status can carry. Authenticated routers add 401 (and 503 for a
lost database) to all their routes. FastAPI's own 422 (`HTTPValidationError`) is replaced by
`Problem`: the app renders validation errors as problem+json too (app/errors.py).

The documentation pages load Swagger UI and ReDoc from this server (the files of the
fastapi-offline package), never from a CDN: a command centre's intranet has none.
"""

import base64
import hashlib
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

from app import etags
from app.errors import PROBLEM_JSON, AppError, ValidationFailed
from app.etags import API_PREFIX

Responses = dict[int | str, dict[str, Any]]

PROBLEM = "Problem"
PROBLEM_REF = f"#/components/schemas/{PROBLEM}"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": PROBLEM,
    "description": "RFC 9457 problem details. `code` is stable; the texts are for people.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "always `about:blank`"},
        "title": {"type": "string", "description": "what kind of problem (one per `code`)"},
        "status": {"type": "integer", "description": "the HTTP status"},
        "detail": {"type": "string", "description": "what went wrong with this request"},
        "code": {"type": "string", "description": "stable snake_case, e.g. `not_found`"},
        "errors": {
            "type": "array",
            "description": "`validation_error`: each value refused, and where",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    # Fields that help with one code (`field`, `missing`, `max_files` …).
    "additionalProperties": True,
}

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
NOT_MODIFIED: Responses = {
    304: {"description": "Not Modified: the `ETag` sent in `If-None-Match` still holds."}
}


def problem_responses(*errors: type[AppError]) -> Responses:
    """`responses=` for a route that can raise these errors: one entry per status."""
    by_status: dict[int, list[type[AppError]]] = {}
    for error in errors:
        group = by_status.setdefault(error.status, [])
        if all(known.code != error.code for known in group):
            group.append(error)
    return {status: _problem_response(group) for status, group in sorted(by_status.items())}


def _problem_response(errors: list[type[AppError]]) -> dict[str, Any]:
    codes = [error.code for error in errors]
    schema = {"allOf": [{"$ref": PROBLEM_REF}, {"properties": {"code": {"enum": codes}}}]}
    response: dict[str, Any] = {
        "description": "; ".join(f"`{error.code}`: {error.title}" for error in errors),
        "content": {PROBLEM_JSON: {"schema": schema}},
    }
    headers = {name: value for error in errors for name, value in error.headers.items()}
    if headers:
        response["headers"] = {
            name: {"description": f"`{value}`", "schema": {"type": "string"}}
            for name, value in headers.items()
        }
    return response


def file_response(description: str, *media_types: str, status: int = 200) -> Responses:
    """A success answer that is a file (or any body other than JSON), with its media types."""
    content = {media_type: {"schema": BINARY} for media_type in media_types}
    return {status: {"description": description, "content": content}}


def merge(*parts: Responses) -> Responses:
    """Several `responses=` dicts as one (a later entry for the same status wins)."""
    merged: Responses = {}
    for part in parts:
        merged |= part
    return merged


def finish_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """What no route says by itself: the `Problem` schema; FastAPI's HTTPValidationError
    replaced by it (the app never sends that shape: validation errors are problem+json with
    `code` `validation_error`); 304 on every authenticated GET (app/etags.py answers
    If-None-Match for all of them)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[PROBLEM] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            response = responses.get("422")
            if response and "application/json" in response.get("content", {}):
                responses["422"] = _problem_response([ValidationFailed])
            if method == "get" and path.startswith(API_PREFIX) and operation.get("security"):
                responses.setdefault("304", NOT_MODIFIED[304])
            operation["responses"] = dict(sorted(responses.items()))
    return schema


ASSETS_URL = "/docs/assets"
# The pages may load nothing from another host and run no script but ours: Swagger UI's own
# start-up script is allowed by its hash (no 'unsafe-inline' for scripts), ReDoc's styles are
# inline (styled-components), its search runs in a blob: worker, and its footer logo, which it
# would fetch from cdn.redoc.ly, is our favicon (`_redoc_script`).
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'{hashes}; "
    "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
    "font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def _same_origin_only(page: HTMLResponse) -> HTMLResponse:
    """The page with DOCS_CSP, its inline scripts (and only those) allowed by their hashes."""
    inline = _INLINE_SCRIPT.findall(bytes(page.body).decode())
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
        for code in inline
    )
    page.headers["Content-Security-Policy"] = DOCS_CSP.format(hashes=hashes)
    return page


@lru_cache(maxsize=1)
def _redoc_script() -> tuple[bytes, str]:
    """ReDoc's bundle with its footer logo taken from here instead of its CDN, and its ETag."""
    body = (_assets_dir() / "redoc.standalone.js").read_bytes()
    body = body.replace(REDOC_LOGO, f"{ASSETS_URL}/favicon.png".encode())
    return body, etags.content_etag(body)


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc), their scripts and styles served from here."""

    @app.get(f"{ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script(request: Request) -> Response:
        body, etag = _redoc_script()
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        cached = etags.not_modified(request, etag, headers)
        return cached or Response(body, media_type="text/javascript", headers=headers)

    app.mount(ASSETS_URL, StaticFiles(directory=_assets_dir()), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _same_origin_only(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} – API",
                oauth2_redirect_url=f"{root}{oauth2_redirect}",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                # No "valid" badge: Swagger UI would fetch it from validator.swagger.io.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _same_origin_only(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} – API",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
