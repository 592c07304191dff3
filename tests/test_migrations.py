"""Migrations build exactly the schema the models describe, on both engines."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel, select

import app.models  # noqa: F401  (registers every table on the metadata)
from app.db import alembic_config, get_engine, migrate
from app.models import Category
from tests.factories import CONTRACT_CATEGORIES


def schema_differences(fresh_database_url: str) -> list[object]:
    with get_engine(fresh_database_url).connect() as connection:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, SQLModel.metadata))


def current_revision(fresh_database_url: str) -> str | None:
    with get_engine(fresh_database_url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(fresh_database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(fresh_database_url)).get_current_head()


def categories(fresh_database_url: str) -> dict[str, str]:
    with Session(get_engine(fresh_database_url)) as session:
        return {c.code: c.name for c in session.exec(select(Category))}


def test_models_match_the_migrated_schema(fresh_database_url):
    migrate(fresh_database_url)
    assert schema_differences(fresh_database_url) == []
    assert current_revision(fresh_database_url) == head_revision(fresh_database_url)


def test_migrate_twice_is_harmless(fresh_database_url):
    migrate(fresh_database_url)
    tables = set(inspect(get_engine(fresh_database_url)).get_table_names())
    migrate(fresh_database_url)
    assert set(inspect(get_engine(fresh_database_url)).get_table_names()) == tables
    assert current_revision(fresh_database_url) == head_revision(fresh_database_url)
    assert schema_differences(fresh_database_url) == []
    with get_engine(fresh_database_url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM categories")).scalar_one() == 15


def test_the_contract_categories_exist_after_migrate(fresh_database_url):
    migrate(fresh_database_url)
    assert categories(fresh_database_url) == CONTRACT_CATEGORIES
    with Session(get_engine(fresh_database_url)) as session:
        for category in session.exec(select(Category)):
            assert category.name_en and category.group
            assert category.deadline_hours > 0
            assert category.unit in {"处", "条", "m²", "m³"}


def test_downgrade_to_nothing_and_back(fresh_database_url):
    migrate(fresh_database_url)
    config = alembic_config(fresh_database_url)
    command.downgrade(config, "base")
    assert current_revision(fresh_database_url) is None
    left = set(inspect(get_engine(fresh_database_url)).get_table_names()) - {"alembic_version"}
    assert left == set()
    migrate(fresh_database_url)
    assert schema_differences(fresh_database_url) == []
    assert categories(fresh_database_url) == CONTRACT_CATEGORIES


def test_the_comparison_notices_a_schema_that_drifted(fresh_database_url):
    """Guards the tests above against comparing nothing with nothing."""
    migrate(fresh_database_url)
    with get_engine(fresh_database_url).begin() as connection:
        connection.execute(text("DROP INDEX ix_photos_sha256"))
    differences = schema_differences(fresh_database_url)
    assert differences, "dropping an index went unnoticed"
    assert "ix_photos_sha256" in repr(differences)
