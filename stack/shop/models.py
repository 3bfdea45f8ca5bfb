"""Pydantic schemas: what the API accepts and returns."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictInt

# Request bodies are strict: an integer field takes a JSON integer only — never true (bool→int),
# "5" (str→int) or 5.0 (float→int), as the published OpenAPI 3.0 `integer` says (no fraction part).
BIGINT_MAX = 2**63 - 1   # ids are Postgres bigints; the same bound in every path, query and body

# An email address as HTML forms take it (WHATWG's "valid email address"). One pattern checks
# it here and is published in the OpenAPI document: the service and its contract agree on
# every string (a validator's own rules, e.g. no `.test` domains, would be invisible to clients).
EMAIL_PATTERN = (r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                 r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
Email = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    # No control characters (Postgres text cannot even hold NUL).
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    # Optional (lab 02): set one to log in at POST /auth/token. Stored only as a salted hash.
    password: SecretStr | None = Field(None, min_length=8, max_length=128)


class UserUpdate(BaseModel):
    """A partial update: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
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
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: SecretStr = Field(min_length=1, max_length=128)
    # A client may ask for a shorter-lived token than the service's default (never longer).
    ttl_s: StrictInt | None = Field(None, ge=1)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


# -- orders (lab 05) ---------------------------------------------------------------
class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    quantity: StrictInt = Field(ge=1, le=1000)
    price_cents: StrictInt = Field(ge=1, le=10_000_000)


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt = Field(ge=1, le=BIGINT_MAX)
    items: list[OrderItem] = Field(min_length=1, max_length=50)
    # Lab switches for the simulated payment call: fail this order's first N attempts
    # (a transient failure; more than the retries = a poison message), and whether the
    # work sleeps (waiting on a remote service) or burns CPU.
    fail_first: StrictInt = Field(0, ge=0, le=1000)
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
