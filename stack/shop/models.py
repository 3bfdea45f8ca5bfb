"""Pydantic schemas: what the API accepts and returns."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr = Field(max_length=254)
    # No control characters (Postgres text cannot even hold NUL).
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    # Optional (lab 02): set one to log in at POST /auth/token. Stored only as a salted hash.
    password: SecretStr | None = Field(None, min_length=8, max_length=128)


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


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr = Field(max_length=254)
    password: SecretStr = Field(min_length=1, max_length=128)
    # A client may ask for a shorter-lived token than the service's default (never longer).
    ttl_s: int | None = Field(None, ge=1)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
