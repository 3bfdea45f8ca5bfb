"""Accounts (lab 04): a balance that concurrent debits must never overspend.

``POST /accounts/{id}/debit?strategy=...`` runs one of three debits:

* ``naive`` — the bug, built in so the lab can show it: read the balance, check it in
  Python, write the new balance. Between the read and the write it yields for
  ``NAIVE_WINDOW_S`` (standing for the work a real handler does there: a call to a
  payment provider, a log line). That widens the window; it does not create it — the
  two round trips to Postgres are a window already.
* ``atomic`` — the learner's ``debit()`` (exercise ``debit``): the check and the write
  happen as one step (a conditional ``UPDATE``, or ``SELECT ... FOR UPDATE`` in a transaction).
* ``optimistic`` — the learner's ``debit_optimistic()``: no lock; write only if the row's
  ``version`` is still the one read, retry (bounded) when another debit won.

``GET /accounts?strategy=n_plus_1|join`` lists accounts with their owners, in N+1
queries or in one (the N+1 pitfall, measured by the lab with pg_stat_statements).
"""

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shop.errors import Conflict, DomainError
from shop.models import BIGINT_MAX

NAIVE_WINDOW_S = 0.005
MONEY_MAX = 10**15


class TooManyConflicts(Exception):
    """Raised by an optimistic debit that lost the race on every one of its attempts."""


class InsufficientFunds(DomainError):
    status_code = 409
    code = "insufficient_funds"


class WriteConflict(Conflict):
    code = "write_conflict"


# -- schemas ------------------------------------------------------------------------------
class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: StrictInt = Field(ge=1, le=BIGINT_MAX)
    balance: StrictInt = Field(ge=0, le=MONEY_MAX)


class AccountOut(BaseModel):
    id: int
    owner_id: int
    balance: int
    version: int


class Debit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, le=MONEY_MAX)


class DebitOut(BaseModel):
    id: int
    balance: int
    strategy: str


class Owner(BaseModel):
    id: int
    email: str
    name: str


class AccountWithOwner(BaseModel):
    id: int
    balance: int
    owner: Owner


class AccountPage(BaseModel):
    items: list[AccountWithOwner]
    limit: int
    offset: int
    strategy: str


Strategy = Literal["naive", "atomic", "optimistic"]
ListStrategy = Literal["n_plus_1", "join"]


# -- SQL ----------------------------------------------------------------------------------
CREATE = ("INSERT INTO accounts (owner_id, balance) VALUES ($1, $2)"
          " RETURNING id, owner_id, balance, version")
READ = "SELECT id, owner_id, balance, version FROM accounts WHERE id = $1"

# The naive debit's two statements.
NAIVE_READ = "SELECT balance FROM accounts WHERE id = $1"
NAIVE_WRITE = "UPDATE accounts SET balance = $2, version = version + 1 WHERE id = $1 RETURNING balance"

# The N+1 listing: one query for the page, then one per account for its owner...
PAGE = "SELECT id, owner_id, balance FROM accounts ORDER BY id LIMIT $1 OFFSET $2"
OWNER = "SELECT id, email, name FROM users WHERE id = $1"
# ... or the same answer in one query.
PAGE_WITH_OWNERS = ("SELECT a.id, a.balance, u.id AS owner_id, u.email, u.name"
                    " FROM accounts a JOIN users u ON u.id = a.owner_id"
                    " ORDER BY a.id LIMIT $1 OFFSET $2")


async def debit_naive(conn, account_id: int, amount: int) -> int | None:
    """Read, check in Python, write: two requests that both read 100 both write 90."""
    balance = await conn.fetchval(NAIVE_READ, account_id)
    if balance is None or balance < amount:
        return None
    await asyncio.sleep(NAIVE_WINDOW_S)   # the window between the check and the write, widened
    return await conn.fetchval(NAIVE_WRITE, account_id, balance - amount)


async def page_n_plus_1(conn, limit: int, offset: int) -> list[dict]:
    items = []
    for row in await conn.fetch(PAGE, limit, offset):                 # 1 query
        owner = await conn.fetchrow(OWNER, row["owner_id"])           # + 1 per account
        items.append({"id": row["id"], "balance": row["balance"], "owner": dict(owner)})
    return items


async def page_join(conn, limit: int, offset: int) -> list[dict]:
    rows = await conn.fetch(PAGE_WITH_OWNERS, limit, offset)          # 1 query, whatever the page size
    return [{"id": r["id"], "balance": r["balance"],
             "owner": {"id": r["owner_id"], "email": r["email"], "name": r["name"]}} for r in rows]
