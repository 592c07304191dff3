"""`gridproof serve --no-migrate`: replicas start on a schema `gridproof migrate` made."""

from pathlib import Path

import pytest
import uvicorn
from alembic import command
from alembic.script import ScriptDirectory

from app import cli
from app.config import get_settings
from app.db import alembic_config, get_engine


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Calls of uvicorn.run (the app it was asked to serve), instead of serving."""
    calls: list[str] = []
    monkeypatch.setenv("GRIDPROOF_IMAGE_PROCESSES", "0")  # serve writes it; undone after
    monkeypatch.setattr(uvicorn, "run", lambda app, **_options: calls.append(app))
    return calls


def _serve(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path, *flags: str) -> int:
    monkeypatch.setenv("GRIDPROOF_DATABASE_URL", database_url)
    monkeypatch.setenv("GRIDPROOF_UPLOAD_DIR", str(tmp_path / "uploads"))
    get_settings.cache_clear()
    try:
        return cli.main(["serve", *flags])
    finally:
        get_settings.cache_clear()


def _revision(database_url: str) -> str | None:
    with get_engine(database_url).connect() as connection:
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def test_no_migrate_serves_a_migrated_database_without_touching_it(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: list[str],
) -> None:
    monkeypatch.setattr(cli, "migrate", lambda _url: pytest.fail("serve --no-migrate migrated"))
    assert _serve(monkeypatch, database_url, tmp_path, "--no-migrate") == 0
    assert served == ["app.main:app"]


def test_no_migrate_refuses_an_empty_database(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[str],
) -> None:
    status = _serve(monkeypatch, fresh_database_url, tmp_path, "--no-migrate")
    assert status == 2
    assert served == []
    error = capsys.readouterr().err
    assert "revision none (empty)" in error
    assert "run `gridproof migrate` first" in error
    with get_engine(fresh_database_url).connect() as connection:
        assert not connection.dialect.has_table(connection, "issues")


def test_no_migrate_refuses_a_schema_behind_the_code(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    served: list[str],
) -> None:
    config = alembic_config(fresh_database_url)
    scripts = ScriptDirectory.from_config(config)
    previous = scripts.get_revision(scripts.get_current_head()).down_revision
    assert isinstance(previous, str)
    command.upgrade(config, previous)
    assert _serve(monkeypatch, fresh_database_url, tmp_path, "--no-migrate") == 2
    assert served == []
    assert f"the database is at revision {previous}, this code needs" in capsys.readouterr().err
    assert _revision(fresh_database_url) == previous  # left as it was


def test_serve_without_the_flag_still_migrates(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: list[str],
) -> None:
    assert _serve(monkeypatch, fresh_database_url, tmp_path) == 0
    assert served == ["app.main:app"]
    head = ScriptDirectory.from_config(alembic_config(fresh_database_url)).get_current_head()
    assert _revision(fresh_database_url) == head
