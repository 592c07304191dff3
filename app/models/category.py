"""Problem categories; seeded by a migration."""

from pydantic import BaseModel
from sqlmodel import Field, SQLModel


class CategoryBase(SQLModel):
    code: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=50)
    name_en: str = Field(max_length=80)
    group: str = Field(max_length=40)
    deadline_hours: int
    unit: str = Field(max_length=10)


class Category(CategoryBase, table=True):
    __tablename__ = "categories"


class CategoryPublic(BaseModel):
    code: str
    name: str
    name_en: str
    group: str
    deadline_hours: int
    unit: str
