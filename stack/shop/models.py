"""Pydantic schemas: what the API accepts and returns."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr = Field(max_length=254)
    # No control characters (Postgres text cannot even hold NUL).
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


class UserUpdate(BaseModel):
    """A partial update: only the fields sent change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr | None = Field(None, max_length=254)
    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    created_at: datetime


class UserPage(BaseModel):
    items: list[UserOut]
    limit: int
    offset: int
    # No total: a count(*) per page is a classic cost at scale.
