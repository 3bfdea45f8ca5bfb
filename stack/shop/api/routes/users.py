"""Users: create, read one, list a page, update and delete (these two need a token from lab 02 on)."""

import asyncio
import re

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import TypeAdapter, ValidationError

from shop.api.contract import errors
from shop.auth import hash_password, require_self
from shop.db import connection, remember_write, run_read
from shop.errors import Conflict, DomainError, NotFound, domain_response
from shop.exercises import ExerciseError
from shop.models import BIGINT_MAX, UserCreate, UserOut, UserPage, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])

DB_NODE = "X-DB-Node"   # which database node served the request: primary or replica (lab 04)
USER_OUT = TypeAdapter(UserOut)


def _served_by(request: Request, response: Response) -> None:
    if node := getattr(request.state, "db_node", None):
        response.headers[DB_NODE] = node


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut, responses=errors(409, 503))
async def create_user(user: UserCreate, request: Request, response: Response):
    password_hash = None
    if user.password is not None:  # slow on purpose (scrypt): off the event loop
        password_hash = await asyncio.to_thread(hash_password, user.password.get_secret_value())
    async with connection(request) as conn:
        try:
            row = await conn.fetchrow(
                "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3)"
                " RETURNING id, email, name, created_at",
                user.email, user.name, password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a user with email {user.email} already exists") from None
        await remember_write(request, response, conn)
    _served_by(request, response)
    return dict(row)


async def _fetch_user(request: Request, user_id: int) -> dict | None:
    # The lookup itself is an exercise (lab 01): see shop/exercises.py. A read: on the
    # replica when there is one and read routing (lab 04) says so, else on the primary.
    return await run_read(request, lambda conn: request.app.state.exercises.call(
        "user_queries", "fetch_user", conn, user_id))


async def _user_or_404(request: Request, user_id: int) -> UserOut:
    # Cache-aside (lab 03): Redis first, the database on a miss or when Redis fails (shop/cache.py).
    user = await request.app.state.user_cache.get(user_id, lambda uid: _fetch_user(request, uid))
    if user is None:
        missing = NotFound(f"no user with id {user_id}")
        if node := getattr(request.state, "db_node", None):
            missing.headers = {DB_NODE: node}   # a 404 from a lagging replica says so
        raise missing
    try:   # what the exercises returned must be a user: else say so (500 exercise_error), in JSON
        return USER_OUT.validate_python(user)
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ExerciseError(f"fetch_user() (or the cache) returned {type(user).__name__} that is not a user: "
                            f"{'.'.join(map(str, problem['loc'])) or 'the value'}: {problem['msg']} — return a dict "
                            "with id, email, name and created_at, or None") from None


# Read with a replica (lab 04): a bad write-LSN cookie is a 400; the read_routing and user
# exercises can be missing (501) or fail (500, declared for every route).
READ_ERRORS = errors(400, 501, 503)


@router.get("/{user_id}", response_model=UserOut, responses={**READ_ERRORS, **errors(404)})
async def read_user(request: Request, response: Response, user_id: int = Path(ge=1, le=BIGINT_MAX)):
    user = await _user_or_404(request, user_id)   # GET /users/<plain id> is served by FastRead below
    _served_by(request, response)
    return user


# -- the hot read, without the framework's per-request machinery ---------------------------
_PLAIN_ID = re.compile(r"/users/([1-9][0-9]{0,18})")


class FastRead:
    """Pure-ASGI ``GET /users/{id}`` for a plain id: the same steps as ``read_user`` above
    (the cache exercise's ``get_user``, the database on a miss, the same JSON through the
    same ``UserOut`` model, the same headers and errors), minus FastAPI's routing, dependency
    solving and response wrapping, which cost more CPU than a cache hit itself (make bench).

    Anything else (another method, a bad id, a trailing slash) goes on to the FastAPI route,
    which answers it exactly as before (422 validation_error, ...). It sits inside every
    middleware (metrics, request id, X-Instance, rate limit): it sets ``scope["route"]`` to
    the FastAPI route, so metrics label it ``/users/{user_id}`` like any routed request.
    """

    def __init__(self, app, route):
        self.app = app
        self.route = route

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or not (
                (m := _PLAIN_ID.fullmatch(scope["path"])) and (user_id := int(m[1])) <= BIGINT_MAX):
            return await self.app(scope, receive, send)
        scope["route"] = self.route
        request = Request(scope, receive)
        try:
            user = await _user_or_404(request, user_id)
        except DomainError as exc:   # answered as the app's handler answers it (shop.errors)
            return await domain_response(exc)(scope, receive, send)
        body = USER_OUT.dump_json(user)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if node := getattr(request.state, "db_node", None):
            headers.append((DB_NODE.lower().encode(), node.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def read_route():
    """The FastAPI route of ``GET /users/{user_id}`` (what FastRead puts in the scope)."""
    return next(r for r in router.routes if getattr(r, "endpoint", None) is read_user)


@router.get("", response_model=UserPage, responses=READ_ERRORS)
async def list_users(
    request: Request,
    response: Response,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000_000),
):
    limit = min(limit, request.app.state.settings.page_size_max)
    rows = await run_read(request, lambda conn: conn.fetch(
        "SELECT id, email, name, created_at FROM users ORDER BY id LIMIT $1 OFFSET $2",
        limit, offset,
    ))
    _served_by(request, response)
    return {"items": [dict(r) for r in rows], "limit": limit, "offset": offset}


@router.patch("/{user_id}", response_model=UserOut, dependencies=[Depends(require_self)],
              responses=errors(404, 409, 503))
async def update_user(update: UserUpdate, request: Request, response: Response,
                      user_id: int = Path(ge=1, le=BIGINT_MAX)):
    changes = update.model_dump(exclude_unset=True, exclude_none=True)
    async with connection(request) as conn:
        try:
            # COALESCE keeps a column when its parameter is NULL (not sent).
            row = await conn.fetchrow(
                "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name)"
                " WHERE id = $1 RETURNING id, email, name, created_at",
                user_id, changes.get("email"), changes.get("name"),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a user with email {changes.get('email')} already exists") from None
        await remember_write(request, response, conn)
    _served_by(request, response)
    await request.app.state.user_cache.forget(user_id)   # the next read sees the new row
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return dict(row)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(require_self)],
               responses=errors(404, 503))
async def delete_user(request: Request, response: Response, user_id: int = Path(ge=1, le=BIGINT_MAX)):
    async with connection(request) as conn:
        deleted = await conn.fetchval("DELETE FROM users WHERE id = $1 RETURNING id", user_id)
        await remember_write(request, response, conn)
    _served_by(request, response)
    await request.app.state.user_cache.forget(user_id)
    if deleted is None:
        raise NotFound(f"no user with id {user_id}")
