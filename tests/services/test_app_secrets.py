"""Secrets in the database (services/app_secrets.py): written once, agreed by racing processes."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session, select

from app.config import Settings
from app.db import get_engine
from app.models import AppSecret
from app.services import app_secrets, signing

RACERS = 6


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_processes_starting_at_once_agree_on_one_secret(settings: Settings) -> None:
    """Every racer finds no row and proposes its own value before any of them inserts."""
    all_looked = threading.Barrier(RACERS, timeout=30)
    engine = get_engine(settings.database_url)

    def race(n: int) -> str:
        def propose() -> str:
            all_looked.wait()  # each has read "absent": the inserts now truly collide
            return f"secret-of-racer-{n}"

        with Session(engine) as session:
            return app_secrets.shared_secret(session, "raced", propose)

    with ThreadPoolExecutor(RACERS) as pool:
        seen = list(pool.map(race, range(RACERS)))
    assert len(set(seen)) == 1 and seen[0].startswith("secret-of-racer-")
    with Session(engine) as session:
        rows = session.exec(select(AppSecret).where(AppSecret.name == "raced")).all()
    assert [row.value for row in rows] == [seen[0]]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replicas_loading_the_signer_at_once_sign_alike(settings: Settings, tmp_path) -> None:
    """Each with its own upload folder (no shared files), all at once on one database."""
    replicas = [
        settings.model_copy(update={"upload_dir": tmp_path / f"replica-{n}"}) for n in range(4)
    ]
    start = threading.Barrier(len(replicas), timeout=30)

    def load(replica: Settings) -> bytes:
        start.wait()
        return signing.load_signer(replica).key

    with ThreadPoolExecutor(len(replicas)) as pool:
        keys = set(pool.map(load, replicas))
    assert len(keys) == 1 and len(keys.pop()) == 64


def test_a_stored_secret_is_never_replaced(settings: Settings) -> None:
    with Session(get_engine(settings.database_url)) as session:
        first = app_secrets.shared_secret(session, "kept", lambda: "first")
        again = app_secrets.shared_secret(session, "kept", lambda: "second")
        other = app_secrets.shared_secret(session, "another", lambda: "third")
    assert (first, again, other) == ("first", "first", "third")
