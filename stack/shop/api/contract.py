"""The OpenAPI document each service publishes (``GET /openapi.json``): every answer, one error shape.

Each route declares the errors of its own logic next to it (``responses=errors(404, 409)``).
What the middlewares answer on a route's behalf is added here, from the settings that
install them, so the document says what this very process does:

* every operation: ``500`` (``internal_error``: a bug, never a traceback);
* an operation with a request body: ``400`` (unreadable), ``408`` (too slow), ``413`` (too
  large), ``415`` (not JSON), ``422`` (invalid) — see shop/middleware.py ``RequestBody``;
* with rate limiting on (lab 03): ``429`` with ``Retry-After`` (and ``400`` for a bad
  ``X-Client-Id``) on every metered path;
* with tokens required (lab 02 on): the Bearer scheme, ``401``/``403``, on PATCH and DELETE.

Every error is an ``ErrorOut`` (shop/errors.py), 422 included (FastAPI would publish its own
``HTTPValidationError`` list, which the service never sends).

The document is OpenAPI 3.0.3, not FastAPI's 3.1: in 3.0 (JSON Schema draft 4/5) an
``integer`` has no fraction part, which is what the strict bodies accept (``5.0`` is refused,
shop/models.py); 3.1's JSON Schema counts ``5.0`` as an integer. The few 3.1 spellings FastAPI
and pydantic produce are rewritten (``_to_openapi_30``). Component schemas come from pydantic
itself: FastAPI's own copy turns integer bounds into floats (2**63-1 would read 2**63).
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_fields_from_routes, get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shop.api.routing import routes
from shop.auth import require_self
from shop.config import Settings
from shop.errors import ErrorOut
from shop.ratelimit import EXEMPT_PATHS

REF = "#/components/schemas/{model}"
DESCRIPTIONS = {
    400: "`bad_request`: a body, header or cookie the service cannot read",
    401: "`unauthorized`, `invalid_token`, `token_expired` or `invalid_credentials`: no valid credentials "
         "(`WWW-Authenticate` says which)",
    403: "`forbidden`: the token's user may not do this",
    404: "`not_found` (or `unknown_user`): what the request names does not exist",
    408: "`request_timeout`: the request body did not arrive in time",
    409: "`conflict` (or `insufficient_funds`, `write_conflict`): the request conflicts with the current data",
    413: "`payload_too_large`: the request body is over the limit",
    415: "`unsupported_media_type`: the request body is not JSON",
    422: "`validation_error`: `detail` lists every problem (where, what)",
    429: "`rate_limited`: too many requests from this client; `Retry-After` says when to try again",
    500: "`internal_error` (a bug: the service's log has the details) or `exercise_error` (learner code failed)",
    501: "`exercise_not_done`: the lab exercise this answer needs is not written yet",
    503: "`unavailable` (or a more precise code): a dependency is down or too slow; retry later",
}
HEADERS = {
    401: {"WWW-Authenticate": {"description": "the Bearer challenge (RFC 6750)", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
}
BODY_STATUSES = (400, 408, 413, 415, 422)
AUTH_STATUSES = (401, 403, 501, 503)
RATE_LIMIT_STATUSES = (400, 429, 501)


def _described(status: int) -> dict:
    return {"description": DESCRIPTIONS[status], **({"headers": HEADERS[status]} if status in HEADERS else {})}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: the error statuses its own code answers, each an ``ErrorOut``."""
    return {status: {"model": ErrorOut, **_described(status)} for status in statuses}


def error_response(status: int) -> dict:
    """The same, as it appears in the document (for statuses added here rather than by a route)."""
    return {**_described(status), "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorOut")}}}}


def install(app: FastAPI, settings: Settings) -> None:
    """Publish this app's contract as ``app.openapi()`` (built once, on the first request for it)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, settings)
        return app.openapi_schema

    app.openapi = openapi   # type: ignore[method-assign]  # FastAPI's documented way to replace the schema


def build(app: FastAPI, settings: Settings) -> dict:
    document = get_openapi(title=app.title, version=app.version, openapi_version="3.0.3", routes=app.routes,
                           description=f"A request's headers arrive within {settings.headers_timeout_s:g} s of its "
                                       "first byte; its body is JSON (`Content-Type: application/json`) of at most "
                                       f"{settings.max_body_bytes} bytes, sent within {settings.body_timeout_s:g} s. "
                                       "Every error is an `ErrorOut`: a stable `error` code and a human `detail`.")
    document.setdefault("components", {})["schemas"] = exact_schemas(app.routes)
    metered = settings.rate_limit > 0 and bool(settings.redis_url)
    for path, item in document["paths"].items():
        for operation in item.values():
            declare(operation, 500)
            if "422" in operation["responses"]:   # FastAPI's HTTPValidationError: never what is sent
                declare(operation, 422, force=True)
            if "requestBody" in operation:
                declare(operation, *BODY_STATUSES, force=True)
                operation["responses"]["413"]["description"] += f" ({settings.max_body_bytes} bytes)"
            if metered and path not in EXEMPT_PATHS:
                declare(operation, *RATE_LIMIT_STATUSES)
    if settings.auth_required:
        require_tokens(document, app)
    for item in document["paths"].values():
        for operation in item.values():
            operation["responses"] = dict(sorted(operation["responses"].items()))
    return _to_openapi_30(document)


def declare(operation: dict, *statuses: int, force: bool = False) -> None:
    for status in statuses:
        if force or str(status) not in operation["responses"]:
            operation["responses"][str(status)] = error_response(status)


def require_tokens(document: dict, app: FastAPI) -> None:
    """The Bearer scheme on the operations that ``require_self`` guards."""
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "a token from POST /auth/token, for the user the path names"}}
    for route in routes(app):
        if any(d.dependency is require_self for d in getattr(route, "dependencies", ())):
            for method in route.methods:
                operation = document["paths"][route.path_format][method.lower()]
                operation["security"] = [{"bearer": []}]
                declare(operation, *AUTH_STATUSES)


def exact_schemas(routes) -> dict:
    """The component schemas, from pydantic: every model a route takes or answers, and ErrorOut."""
    models = {(field.field_info.annotation, field.mode) for field in get_fields_from_routes(list(routes))
              if isinstance(field.field_info.annotation, type) and issubclass(field.field_info.annotation, BaseModel)}
    models.add((ErrorOut, "serialization"))
    _, schema = models_json_schema(sorted(models, key=lambda m: (m[0].__name__, m[1])), ref_template=REF)
    return dict(sorted(schema["$defs"].items()))


def _to_openapi_30(node):
    """Rewrite the JSON Schema 2020-12 spellings FastAPI and pydantic produce into OpenAPI 3.0's."""
    if isinstance(node, list):
        return [_to_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _to_openapi_30(value) for key, value in node.items()}
    variants = node.get("anyOf")
    if variants and {"type": "null"} in variants:      # X | None → X, nullable
        rest = [v for v in variants if v != {"type": "null"}]
        del node["anyOf"]
        node.update(rest[0] if len(rest) == 1 and "$ref" not in rest[0] else {"anyOf": rest})
        node["nullable"] = True
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node[bound], bool):
            node[plain], node[bound] = node[bound], True
    if "in" in node and isinstance(node.get("schema"), dict):   # a parameter: absent is how it says None
        node["schema"].pop("nullable", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    node.pop("examples", None)
    return node
