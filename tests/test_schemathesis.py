"""Schemathesis (a fuzzer nobody here wrote) against the live service and its own /openapi.json.

One real server (uvicorn in a thread on 127.0.0.1, SQLite, a temp upload folder) holding the
test zone and a few issues with photos; every operation but logout (which would revoke the
fuzzer's own token) is fuzzed as a supervisor and as a viewer. Each answer must be no 5xx, with
a documented status and a documented media type. The run is bounded by the examples per
operation (and a fixed seed): 27 s for the whole file on an idle core (48 tests).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from argon2 import PasswordHasher
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance
from sqlmodel import Session

from app.config import Settings
from app.db import get_engine, migrate
from app.main import create_app
from app.services import auth
from tests import factories
from tests.servers import serve_in_thread

ROLES = ["d_super", "viewer"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
MAX_EXAMPLES = 8
DOCUMENT = create_app(Settings(database_url="sqlite://", upload_dir=Path("unused"))).openapi()


@dataclass
class Served:
    url: str
    zone: factories.Zone


def _seed_issues(url: str, zone: factories.Zone) -> None:
    """A reported issue and one dispatched, rectified with an after-photo (a comparison)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for seed in (1, 2):
            made = client.post(
                "/api/v1/issues",
                headers=zone.headers("grid_worker"),
                data={"category": "flyposter", "description": f"电线杆小广告 {seed}"},
                files=factories.files("photos", factories.jpeg(seed=seed)),
            )
            assert made.status_code == 201, made.text
        issue = made.json()
        dispatched = client.post(
            f"/api/v1/issues/{issue['id']}/transitions",
            headers=zone.headers("d_super", **{"If-Match": f'"{issue["version"]}"'}),
            json={"action": "dispatch", "org_unit": "A"},
        )
        assert dispatched.status_code == 200, dispatched.text
        after = client.post(
            f"/api/v1/issues/{issue['id']}/photos",
            headers=zone.headers("a_worker"),
            data={"kind": "after"},
            files=factories.files("files", factories.jpeg(seed=3)),
        )
        assert after.status_code == 201, after.text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as patch:
        # As in conftest's cheap_password_hashing (function-scoped): the fuzzer signs in a lot.
        cheap = PasswordHasher(time_cost=1, memory_cost=1024)
        patch.setattr(auth, "_hasher", cheap)
        patch.setattr(auth, "_DUMMY_HASH", cheap.hash("not a password"))
        yield from _serve(tmp_path_factory.mktemp("fuzzed"))


def _serve(root: Path) -> Iterator[Served]:
    settings = Settings(
        database_url=f"sqlite:///{root / 'gp.db'}", upload_dir=root / "uploads", max_upload_mb=1
    )
    migrate(settings.database_url)
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        zone = factories.make_zone(session)
    server, thread, port = serve_in_thread(settings)
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/openapi.json").json() == DOCUMENT
    _seed_issues(url, zone)
    yield Served(url, zone)
    server.should_exit = True
    thread.join(timeout=10)
    get_engine(settings.database_url).dispose()


@pytest.fixture(scope="module", params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    username: str = request.param
    return username


# The document the live server serves (the `served` fixture checks that it is the same); loaded
# here because schemathesis builds its tests when this module is collected.
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": 20261206,
            "generation": {"max-examples": MAX_EXAMPLES},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
).exclude(path="/api/v1/auth/logout")


@schema.parametrize()
def test_every_answer_is_one_the_openapi_document_names(
    case: schemathesis.Case, served: Served, role: str
) -> None:
    case.call_and_validate(base_url=served.url, headers=served.zone.headers(role), checks=CHECKS)
