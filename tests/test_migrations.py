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

CATEGORIES = {
    "flyposter": "非法小广告", "banner": "违规横幅", "wall_ad": "墙体广告",
    "road_occupation": "占道经营", "outside_store": "店外经营", "bare_soil": "黄土裸露",
    "garbage": "暴露垃圾", "illegal_building": "违法建设", "construction_site": "施工工地扬尘",
    "road_damage": "道路破损", "street_light": "路灯设施损坏", "shared_bike": "共享单车乱停放",
    "scattered_coal": "散煤", "fire_hazard": "消防隐患", "other": "其他",
}


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
    assert categories(fresh_database_url) == CATEGORIES
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
    assert categories(fresh_database_url) == CATEGORIES


def test_the_comparison_notices_a_schema_that_drifted(fresh_database_url):
    """Guards the tests above against comparing nothing with nothing."""
    migrate(fresh_database_url)
    with get_engine(fresh_database_url).begin() as connection:
        connection.execute(text("DROP INDEX ix_photos_sha256"))
    differences = schema_differences(fresh_database_url)
    assert differences, "dropping an index went unnoticed"
    assert "ix_photos_sha256" in repr(differences)
