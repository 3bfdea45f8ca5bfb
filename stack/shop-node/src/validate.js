// The request models of the user API (shop/models.py), checked by hand: the same fields,
// bounds and patterns, and a 422 listing every problem as {loc, msg, type}, where the FastAPI
// service would list it. Lengths count code points, as Python does, not UTF-16 units.
"use strict";

const { JsonFloat } = require("./strictjson");
const { ValidationFailed } = require("./errors");

const BIGINT_MAX = 2n ** 63n - 1n;
const EMAIL = new RegExp("^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
  + "(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$");
const NAME = /^[^\x00-\x1f\x7f]+$/;

const length = (text) => [...text].length;
const problem = (loc, msg, type) => ({ loc, msg, type });

// A string field: type, then length, then pattern (pydantic's order). Returns a problem or null.
// A secret (a password: pydantic's SecretStr) words its length problems as a sized value does.
function string(value, loc, { min = 0, max = Infinity, pattern = null, secret = false }) {
  if (typeof value !== "string") return problem(loc, "Input should be a valid string", "string_type");
  const n = length(value);
  const plural = (k, word) => `${k} ${word}${k === 1 ? "" : "s"}`;
  if (n < min) {
    return secret ? problem(loc, `Value should have at least ${plural(min, "item")} after validation, not ${n}`, "too_short")
      : problem(loc, `String should have at least ${plural(min, "character")}`, "string_too_short");
  }
  if (n > max) {
    return secret ? problem(loc, `Value should have at most ${plural(max, "item")} after validation, not ${n}`, "too_long")
      : problem(loc, `String should have at most ${plural(max, "character")}`, "string_too_long");
  }
  if (pattern && !pattern.test(value)) return problem(loc, `String should match pattern '${pattern.source}'`, "string_pattern_mismatch");
  return null;
}

const FIELDS = {
  email: (v, loc) => string(v, loc, { max: 254, pattern: EMAIL }),
  name: (v, loc) => string(v, loc, { min: 1, max: 100, pattern: NAME }),
  password: (v, loc) => string(v, loc, { min: 8, max: 128, secret: true }),
  loginPassword: (v, loc) => string(v, loc, { min: 1, max: 128, secret: true }),
  ttl: (v, loc) => {
    if (!Number.isInteger(v) || v instanceof JsonFloat) return problem(loc, "Input should be a valid integer", "int_type");
    return v < 1 ? problem(loc, "Input should be greater than or equal to 1", "greater_than_equal") : null;
  },
};

// model: {field: [check, required, nullable]}. Returns the body's fields; throws a 422.
function model(body, spec) {
  if (body === undefined) throw new ValidationFailed([problem(["body"], "Field required", "missing")]);
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ValidationFailed([problem(["body"], "Input should be a valid dictionary or object to extract fields from",
      "model_attributes_type")]);
  }
  const problems = [];
  for (const [field, [check, required, nullable]] of Object.entries(spec)) {
    const loc = ["body", field];
    if (!Object.hasOwn(body, field)) {
      if (required) problems.push(problem(loc, "Field required", "missing"));
    } else if (!(nullable && body[field] === null)) {
      const found = check(body[field], loc);
      if (found) problems.push(found);
    }
  }
  for (const field of Object.keys(body)) {
    if (!Object.hasOwn(spec, field)) problems.push(problem(["body", field], "Extra inputs are not permitted", "extra_forbidden"));
  }
  if (problems.length) throw new ValidationFailed(problems);
  return body;
}

const userCreate = (body) => model(body, {
  email: [FIELDS.email, true, false], name: [FIELDS.name, true, false], password: [FIELDS.password, false, true] });
const userUpdate = (body) => model(body, {
  email: [FIELDS.email, false, true], name: [FIELDS.name, false, true] });
const tokenRequest = (body) => model(body, {
  email: [FIELDS.email, true, false], password: [FIELDS.loginPassword, true, false], ttl_s: [FIELDS.ttl, false, true] });

// An integer from a path or query string, as pydantic's lax mode reads one ("7", " 7", "+7",
// "7.0"), within [min, max]; a BigInt, because ids go up to 2**63 - 1.
function integer(text, loc, min, max) {
  const m = /^\s*([+-]?[0-9]+)(?:\.0*)?\s*$/.exec(text ?? "");
  if (!m) return [null, problem(loc, "Input should be a valid integer, unable to parse string as an integer", "int_parsing")];
  const value = BigInt(m[1]);
  if (value < min) return [null, problem(loc, `Input should be greater than or equal to ${min}`, "greater_than_equal")];
  if (value > max) return [null, problem(loc, `Input should be less than or equal to ${max}`, "less_than_equal")];
  return [value, null];
}

function userId(text) {
  const [value, found] = integer(text, ["path", "user_id"], 1n, BIGINT_MAX);
  if (found) throw new ValidationFailed([found]);
  return value;
}

// ?limit=&offset= (the last one when a name repeats, as FastAPI takes it).
function page(query) {
  const last = (v) => (Array.isArray(v) ? v[v.length - 1] : v);
  const problems = [];
  const read = (name, fallback, min, max) => {
    const raw = last(query[name]);
    if (raw === undefined) return BigInt(fallback);
    const [value, found] = integer(String(raw), ["query", name], min, max);
    if (found) problems.push(found);
    return value;
  };
  const limit = read("limit", 20, 1n, 100n);
  const offset = read("offset", 0, 0n, 1_000_000_000n);
  if (problems.length) throw new ValidationFailed(problems);
  return { limit: Number(limit), offset: Number(offset) };
}

module.exports = { userCreate, userUpdate, tokenRequest, userId, page, BIGINT_MAX };
