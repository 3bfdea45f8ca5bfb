// Errors are data: every error leaves the service as JSON {"error": code, "detail": text},
// the same envelope (ErrorOut) and the same codes as the FastAPI service (shop/errors.py).
"use strict";

class DomainError extends Error {
  constructor(status, code, detail, headers = {}) {
    super(typeof detail === "string" ? detail : code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.headers = headers;
  }
}

const notFound = (detail) => new DomainError(404, "not_found", detail);
const conflict = (detail) => new DomainError(409, "conflict", detail);
const unavailable = (detail) => new DomainError(503, "unavailable", detail);

// 422: one entry per problem, where (loc) and what (msg, type), never the input echoed back.
class ValidationFailed extends DomainError {
  constructor(problems) {
    super(422, "validation_error", problems);
  }
}

function sendError(res, status, code, detail, headers = {}) {
  const body = JSON.stringify({ error: code, detail });
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

module.exports = { DomainError, ValidationFailed, notFound, conflict, unavailable, sendError };
