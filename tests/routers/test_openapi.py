"""The OpenAPI document tells the truth, routes are authenticated by default, /docs is offline.

What the live service really answers is checked against this document by schemathesis
(tests/test_schemathesis.py); here: the document's own shape and rules.
"""

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from app.config import Settings
from app.deps import get_current_user
from app.errors import PROBLEM_JSON, AppError
from app.main import create_app
from app.routers.api import authenticated_router
from app.services.photos import CONTENT_TYPES
from tests.factories import assert_problem

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/api/v1/auth/login")}
PUBLIC |= {("GET", "/media/photos/{photo_id}/{size}.jpg")}  # signed links: no token
PROBLEM_REF = "#/components/schemas/Problem"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app, for what needs no database: its document, its docs pages and their assets."""
    root = tmp_path_factory.mktemp("openapi")
    return create_app(Settings(database_url=f"sqlite:///{root / 'unused.db'}", upload_dir=root))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(
    document: dict[str, Any], prefix: str = "/"
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The operations of the JSON API (Open311 is another face, with its own errors and key)."""
    for path, methods in document["paths"].items():
        if path.startswith(prefix) and not path.startswith("/open311/"):
            for method, operation in methods.items():
                yield method.upper(), path, operation


def problem_codes(response: dict[str, Any]) -> list[str]:
    """The `code`s a documented problem response names (and that it uses the Problem schema)."""
    schema = response["content"][PROBLEM_JSON]["schema"]
    shared, narrowed = schema["allOf"]
    assert shared == {"$ref": PROBLEM_REF}
    codes: list[str] = narrowed["properties"]["code"]["enum"]
    return codes


def test_the_document_is_valid_openapi(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_authenticated_operation_says_401_with_its_challenge(document):
    seen = 0
    for method, path, operation in operations(document):
        if (method, path) in PUBLIC:
            assert "security" not in operation, path
            continue
        seen += 1
        assert operation["security"] == [{"HTTPBearer": []}], path
        unauthenticated = operation["responses"]["401"]
        assert problem_codes(unauthenticated) == ["unauthenticated"], path
        assert "WWW-Authenticate" in unauthenticated["headers"], path
    assert seen >= 20


def test_every_error_is_problem_json_with_the_one_shared_schema(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "code",
        "errors",
    }
    # FastAPI's default validation error is gone: the app never sends that shape.
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(document)
    for method, path, operation in operations(document):
        has_input = operation.get("parameters") or operation.get("requestBody")
        if has_input:
            assert "validation_error" in problem_codes(operation["responses"]["422"]), path
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and (method, path) != ("GET", "/readyz"):
                assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
                assert problem_codes(response), (method, path, status)


# Raised only by the command line (gridproof grid import), never answered over HTTP.
CLI_ONLY = {"grid_import_refused"}
# Raised only under /open311/v2, which answers the spec's error list, not problem+json (its
# test: tests/live/test_open311.py).
OPEN311_ONLY = {"unknown_address"}


def _error_classes(base: type[AppError] = AppError) -> Iterator[type[AppError]]:
    for cls in base.__subclasses__():
        if cls.code not in CLI_ONLY | OPEN311_ONLY:
            yield cls
        yield from _error_classes(cls)


def test_every_error_code_is_documented_where_it_can_come_from(document):
    documented: dict[tuple[str, str], set[str]] = {}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if PROBLEM_JSON in response.get("content", {}):
                codes = set(problem_codes(response))
                documented.setdefault((method, path), set()).update(f"{status} {c}" for c in codes)
    everywhere = set().union(*documented.values())
    for error in _error_classes():
        assert f"{error.status} {error.code}" in everywhere, error
    transition = documented[("POST", "/api/v1/issues/{issue_id}/transitions")]
    assert {
        "403 forbidden",
        "404 not_found",
        "409 invalid_transition",
        "409 after_photo_required",
        "412 version_conflict",
        "422 override_note_required",
        "428 precondition_required",
    } <= transition
    report = documented[("POST", "/api/v1/issues")]
    assert {
        "403 forbidden",
        "409 idempotency_conflict",
        "413 photo_too_large",
        "415 unsupported_media_type",
        "422 image_unreadable",
        "422 image_too_many_pixels",
        "422 too_many_files",
        "422 location_required",
    } <= report
    assert "409 photo_not_allowed" in documented[("POST", "/api/v1/issues/{issue_id}/photos")]
    assert "403 forbidden" in documented[("GET", "/api/v1/photos/{photo_id}/original")]
    assert "403 forbidden" in documented[("GET", "/api/v1/issues/{issue_id}/events")]
    assert {"403 forbidden", "404 not_found"} <= documented[("GET", "/api/v1/stats")]


@pytest.mark.parametrize(
    ("path", "media_types"),
    [
        ("/api/v1/issues.geojson", ["application/geo+json"]),
        ("/api/v1/exports/ledger.csv", ["text/csv"]),
        ("/api/v1/exports/ledger.xlsx", [XLSX]),
        ("/api/v1/issues/{issue_id}/evidence.zip", ["application/zip"]),
        ("/api/v1/issues/{issue_id}/comparison.jpg", ["image/jpeg"]),
        ("/api/v1/photos/{photo_id}/thumb", ["image/jpeg"]),
        ("/api/v1/photos/{photo_id}/large", ["image/jpeg"]),
        ("/api/v1/photos/{photo_id}/original", sorted(CONTENT_TYPES.values())),
    ],
)
def test_files_are_documented_with_their_real_media_types(document, path, media_types):
    ok = document["paths"][path]["get"]["responses"]["200"]
    assert sorted(ok["content"]) == media_types


def test_authenticated_gets_document_304(document):
    for method, path, operation in operations(document):
        if method == "GET" and (method, path) not in PUBLIC:
            assert "304" in operation["responses"], path


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def test_every_api_route_but_the_public_ones_checks_the_token(app):
    routes = [
        r
        for r in iter_route_contexts(app.routes)
        if isinstance(r.original_route, APIRoute) and r.path.startswith("/api/")
    ]
    assert len(routes) >= 20
    for route in routes:
        for method in route.methods:
            public = (method, route.path) in PUBLIC
            assert _depends_on(route.dependant, get_current_user) is not public, route.path
            # …and on its router, not because the route happens to ask for the user.
            declared = [d.dependency for d in route.original_route.dependencies]
            assert (get_current_user in declared) is not public, route.path


def test_a_new_route_on_an_api_router_needs_a_token_without_asking_for_it(settings):
    router = authenticated_router(prefix="/api/v1")

    @router.get("/forgetful")
    def forgetful() -> dict[str, str]:
        return {"secret": "no user asked for"}

    app = create_app(settings)
    app.include_router(router)
    with TestClient(app) as client:
        refused = client.get("/api/v1/forgetful")
        assert_problem(refused, 401, "unauthenticated")
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        bad = client.get("/api/v1/forgetful", headers={"Authorization": "Bearer nope"})
        assert_problem(bad, 401, "unauthenticated")
    assert "401" in app.openapi()["paths"]["/api/v1/forgetful"]["get"]["responses"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}],
    ids=["none", "unknown", "basic"],
)
def test_401_answers_carry_the_bearer_challenge(client, headers):
    refused = client.get("/api/v1/auth/me", headers=headers)
    assert_problem(refused, 401, "unauthenticated")
    assert refused.headers["WWW-Authenticate"] == "Bearer"


def test_a_failed_sign_in_carries_the_bearer_challenge_too(client):
    body = {"username": "nobody", "password": "wrong"}
    refused = client.post("/api/v1/auth/login", json=body)
    assert_problem(refused, 401, "unauthenticated")
    assert refused.headers["WWW-Authenticate"] == "Bearer"


class _Links(HTMLParser):
    """Every URL a page loads or links to: src, href, spec-url, and `url:` in its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url", "action") and v]

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", data)
            self.urls += re.findall(r"https?://[^\s'\"]+", data)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_this_server(app, page):
    with TestClient(app) as client:
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        # Whatever a bundle would fetch by itself, the browser refuses from another host.
        assert "default-src 'self'" in response.headers["content-security-policy"]
        links = _Links()
        links.feed(response.text)
        assert links.urls, response.text
        for url in links.urls:
            assert url.startswith("/") and not url.startswith("//"), url
            assert client.get(url).status_code == 200, url
        # Swagger UI's "valid" badge would come from validator.swagger.io.
        if page == "/docs":
            assert '"validatorUrl": null' in response.text
        scripts = [u for u in links.urls if u.endswith(".js")]
        assert scripts and all(len(client.get(u).content) > 100_000 for u in scripts)


def test_the_docs_assets_come_from_the_installed_package(app):
    import fastapi_offline

    package = Path(fastapi_offline.__file__).parent / "static"
    with TestClient(app) as client:
        served = client.get("/docs/assets/swagger-ui-bundle.js")
    assert served.content == (package / "swagger-ui-bundle.js").read_bytes()


def test_open311_documents_its_own_answers_in_xml_and_json(document):
    """GeoReport v2 answers, errors included, in the format of the path's extension."""
    paths = [p for p in document["paths"] if p.startswith("/open311/v2/") and "{fmt}" in p]
    assert len(paths) >= 6
    for path in paths:
        for method, operation in document["paths"][path].items():
            for status in ("400", "403", "404"):
                content = operation["responses"][status]["content"]
                assert set(content) == {"text/xml", "application/json"}, (method, path, status)
