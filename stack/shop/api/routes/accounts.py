"""Accounts: create, read, debit (three strategies: lab 04's race), list with owners (N+1)."""

import asyncpg
from fastapi import APIRouter, Path, Query, Request, status

from shop import accounts
from shop.accounts import (
    AccountCreate,
    AccountOut,
    AccountPage,
    Debit,
    DebitOut,
    InsufficientFunds,
    ListStrategy,
    Strategy,
    TooManyConflicts,
    WriteConflict,
)
from shop.api.contract import errors
from shop.db import connection
from shop.errors import NotFound
from shop.exercises import ExerciseError
from shop.models import BIGINT_MAX

router = APIRouter(prefix="/accounts", tags=["accounts"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AccountOut, responses=errors(404, 503))
async def create_account(account: AccountCreate, request: Request):
    async with connection(request) as conn:
        try:
            row = await conn.fetchrow(accounts.CREATE, account.owner_id, account.balance)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"no user with id {account.owner_id}") from None
    return dict(row)


@router.get("", response_model=AccountPage, responses=errors(503))
async def list_accounts(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000_000),
    strategy: ListStrategy = Query("join", description="n_plus_1: one query per owner; join: one query"),
):
    page = accounts.page_join if strategy == "join" else accounts.page_n_plus_1
    async with connection(request) as conn:
        items = await page(conn, limit, offset)
    return {"items": items, "limit": limit, "offset": offset, "strategy": strategy}


@router.get("/{account_id}", response_model=AccountOut, responses=errors(404, 503))
async def read_account(request: Request, account_id: int = Path(ge=1, le=BIGINT_MAX)):
    async with connection(request) as conn:
        row = await conn.fetchrow(accounts.READ, account_id)
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    return dict(row)


@router.post("/{account_id}/debit", response_model=DebitOut, responses=errors(404, 409, 501, 503))
async def debit_account(
    debit: Debit,
    request: Request,
    account_id: int = Path(ge=1, le=BIGINT_MAX),
    strategy: Strategy = Query("atomic",
                               description="naive (the race), atomic: debit(), optimistic: debit_optimistic()"),
):
    exercises = request.app.state.exercises
    async with connection(request) as conn:
        if strategy == "naive":
            balance = await accounts.debit_naive(conn, account_id, debit.amount)
        else:
            function = "debit" if strategy == "atomic" else "debit_optimistic"
            try:
                balance = await exercises.call("debit", function, conn, account_id, debit.amount,
                                               passthrough=(TooManyConflicts,))
            except TooManyConflicts as exc:
                raise WriteConflict(f"gave up after repeated write conflicts: {exc}; retry the request") from None
            if balance is not None and (isinstance(balance, bool) or not isinstance(balance, int)):
                raise ExerciseError(f"{function}() returned {type(balance).__name__} {balance!r:.80}: return the "
                                    "new balance (an int), or None when nothing was debited")
        if balance is None:   # not debited: say why
            current = await conn.fetchval(accounts.NAIVE_READ, account_id)
            if current is None:
                raise NotFound(f"no account with id {account_id}")
            raise InsufficientFunds(f"account {account_id} holds {current}, cannot debit {debit.amount}")
    return {"id": account_id, "balance": balance, "strategy": strategy}
