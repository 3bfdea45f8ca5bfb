"""Pydantic schemas: what the API accepts and returns."""

from datetime import datetime
from typing import Literal

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


# -- orders (lab 05) ---------------------------------------------------------------
class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    quantity: int = Field(ge=1, le=1000)
    price_cents: int = Field(ge=1, le=10_000_000)


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=1, le=2**63 - 1)
    items: list[OrderItem] = Field(min_length=1, max_length=50)
    # Lab switches for the simulated payment call: fail this order's first N attempts
    # (a transient failure; more than the retries = a poison message), and whether the
    # work sleeps (waiting on a remote service) or burns CPU.
    fail_first: int = Field(0, ge=0, le=1000)
    work: Literal["io", "cpu"] = "io"


class OrderOut(BaseModel):
    id: int
    user_id: int
    status: str
    items: list[OrderItem]
    total_cents: int
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None
