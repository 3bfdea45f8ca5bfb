"""Errors are data: every error leaves the service as JSON ``{"error": code, "detail": text}``."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


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


class ExerciseNotDone(DomainError):
    """Learner code in the workspace is still the stub (or missing)."""

    status_code = 501
    code = "exercise_not_done"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, detail) -> dict:
    return {"error": code, "detail": detail}


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
    async def _http(_: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, exc.detail), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
