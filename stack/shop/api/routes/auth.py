"""POST /auth/token: trade an email and a password for a token that every replica accepts."""

import asyncio

from fastapi import APIRouter, Request, Response

from shop import auth
from shop.api.contract import errors
from shop.db import connection
from shop.models import TokenOut, TokenRequest

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut, responses=errors(401, 503))
async def token(body: TokenRequest, request: Request, response: Response):
    settings = request.app.state.settings
    auth.secret(settings)  # 503 before any work when tokens are off
    async with connection(request) as conn:
        row = await conn.fetchrow("SELECT id, password_hash FROM users WHERE lower(email) = lower($1)", body.email)
    stored = row["password_hash"] if row is not None else None
    # An unknown email is hashed too: both answers take as long (no probing for accounts).
    if not await asyncio.to_thread(auth.verify_password, body.password.get_secret_value(), stored):
        raise auth.Unauthorized("wrong email or password", code="invalid_credentials")
    access_token, ttl = auth.issue_token(settings, row["id"], body.ttl_s)
    response.headers["Cache-Control"] = "no-store"
    return {"access_token": access_token, "token_type": "bearer", "expires_in": ttl}
