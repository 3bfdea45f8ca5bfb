"""Errors are data: every error leaves the service as JSON ``{"error": code, "detail": text}``.

``ErrorOut`` is that envelope as a model: the OpenAPI document declares it for every status
a route can answer (shop/api/contract.py), and nginx's own error pages have the same shape.
"""

import json
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shop.api.routing import allowed_methods


class Problem(BaseModel):
    """One reason a request was invalid: where (``loc``) and what (``msg``, ``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The body of every error answer."""

    error: str = Field(pattern=r"^[a-z_]+$", description="a stable code a client can branch on")
    detail: str | list[Problem] = Field(description="for people: what was wrong (422: one entry per problem)")


class DomainError(Exception):
    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None   # extra response headers, e.g. WWW-Authenticate

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class ExerciseError(DomainError):
    """Learner code in the workspace failed (did not load, raised, or returned the wrong thing)."""

    status_code = 500
    code = "exercise_error"


class ExerciseNotDone(DomainError):
    """Learner code in the workspace is still the stub (or missing)."""

    status_code = 501
    code = "exercise_not_done"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, detail) -> dict:
    return {"error": code, "detail": detail}


async def send_error(send, status: int, code: str, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer with the error envelope from pure-ASGI code (a middleware, before any route runs)."""
    payload = json.dumps(error_body(code, detail)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def domain_response(exc: "DomainError") -> JSONResponse:
    """How every domain error is answered: its status, ``{error, detail}`` and its headers."""
    return JSONResponse(error_body(exc.code, exc.detail), status_code=exc.status_code, headers=exc.headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError):
        return domain_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        # Only the parts a client needs: where, what; never the raw input echoed back.
        problems = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse(error_body("validation_error", problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request.app, request.scope["path"])}
            if request.method == "OPTIONS":   # RFC 9110: OPTIONS asks which methods the path serves
                return Response(status_code=204, headers=headers)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, exc.detail), status_code=exc.status_code, headers=headers)
