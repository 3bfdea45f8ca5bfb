"""Stateless authentication: salted password hashes, and JWTs that any replica can check.

* Passwords: scrypt from the standard library, a random salt per user, stored as
  ``scrypt$n$r$p$salt$hash`` and compared in constant time. Hashing runs in a thread:
  it is deliberately slow (tens of ms) and must not stall the event loop.
* Tokens: HS256 JWTs signed with ``settings.jwt_secret``. Every replica holds the same
  secret, so a token issued by users-1 is accepted by users-3: no session lives in a
  process, and the load balancer needs no sticky sessions.
* Checking a token is an exercise (lab 02, ``tokens.verify_token``, loaded through
  shop/exercises.py). A ``jwt.InvalidTokenError`` from it is a 401 with
  ``WWW-Authenticate: Bearer`` and a JSON body, like every other error.
"""

import base64
import functools
import hashlib
import hmac
import math
import re
import secrets
import time

import jwt
from fastapi import Path, Request

from shop.config import Settings
from shop.errors import DomainError
from shop.models import BIGINT_MAX

ALGORITHM = "HS256"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1   # 16 MB of memory per hash: costly to brute-force


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str, code: str = "unauthorized", bearer_error: str | None = None):
        super().__init__(detail)
        self.code = code
        # RFC 6750: a bare challenge when no token came, error="invalid_token" for a bad one.
        challenge = "Bearer"
        if bearer_error:
            description = re.sub(r'[^ -~]|["\\]', "", detail)[:200]
            challenge = f'Bearer error="{bearer_error}", error_description="{description}"'
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class AuthNotConfigured(DomainError):
    status_code = 503
    code = "auth_not_configured"


# -- passwords ---------------------------------------------------------------------------
def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@functools.cache
def _decoy() -> str:
    """A hash to check unknown users against, so that they cost as much time as known ones."""
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; always does the full work (no timing hint)."""
    known = stored is not None and stored.startswith("scrypt$")
    _, n, r, p, salt, digest = (stored if known and stored is not None else _decoy()).split("$")
    candidate = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(candidate, _unb64(digest)) and known


# -- tokens ------------------------------------------------------------------------------
def secret(settings: Settings) -> str:
    if settings.jwt_secret is None:
        raise AuthNotConfigured("tokens are off: the service was started without SHOP_JWT_SECRET")
    return settings.jwt_secret.get_secret_value()


def issue_token(settings: Settings, user_id: int, ttl_s: int | None = None) -> tuple[str, int]:
    """A signed token for ``user_id`` and its lifetime (at most ``settings.jwt_ttl_s``)."""
    ttl = min(ttl_s or settings.jwt_ttl_s, settings.jwt_ttl_s)
    now = time.time()
    # Whole seconds (RFC 7519); exp rounded up, so a token lives at least ttl seconds.
    claims = {"sub": str(user_id), "iat": int(now), "exp": math.ceil(now) + ttl}
    return jwt.encode(claims, secret(settings), algorithm=ALGORITHM), ttl


async def bearer_user(request: Request) -> int:
    """The user id that the request's Bearer token proves; 401 otherwise."""
    header = request.headers.get("authorization", "")
    if not header:
        raise Unauthorized("this request needs a token: send `Authorization: Bearer <token>` "
                           "(get one at POST /auth/token)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`",
                           code="invalid_token", bearer_error="invalid_request")
    settings = request.app.state.settings
    try:
        claims = await request.app.state.exercises.call(
            "tokens", "verify_token", token.strip(), secret(settings), passthrough=(jwt.InvalidTokenError,))
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired: get a new one at POST /auth/token",
                           code="token_expired", bearer_error="invalid_token") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the token is not valid: {exc}", code="invalid_token",
                           bearer_error="invalid_token") from None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not (isinstance(subject, str) and subject.isdigit()):
        raise Unauthorized("the token names no user (claim `sub`)", code="invalid_token", bearer_error="invalid_token")
    return int(subject)


async def require_self(request: Request, user_id: int = Path(ge=1, le=BIGINT_MAX)) -> None:
    """Dependency of PATCH/DELETE /users/{user_id}: when ``settings.auth_required``, only
    that user may do it, proven by a Bearer token."""
    if not request.app.state.settings.auth_required:
        return
    caller = await bearer_user(request)
    if caller != user_id:
        raise Forbidden(f"this token is for user {caller}: it cannot change user {user_id}")
