// HS256 JWTs (RFC 7519) with Node's own HMAC: the same claims as the FastAPI service issues
// (sub, iat, exp) and the same checks as lab 02's reference verify_token, so a token from any
// replica, in either language, is good on all of them.
"use strict";

const crypto = require("node:crypto");

class InvalidToken extends Error {
  constructor(message, expired = false) {
    super(message);
    this.expired = expired;
  }
}

const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const sign = (input, secret) => crypto.createHmac("sha256", secret).update(input).digest();

function issueToken(secret, userId, ttlS) {
  const now = Date.now() / 1000;
  // Whole seconds; exp rounded up, so a token lives at least ttl seconds (as shop/auth.py).
  const claims = { sub: String(userId), iat: Math.floor(now), exp: Math.ceil(now) + ttlS };
  const input = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${input}.${sign(input, secret).toString("base64url")}`;
}

function segment(text, what) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new InvalidToken(`${what} is not base64url`);
  try {
    return JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    throw new InvalidToken(`${what} is not JSON`);
  }
}

function verifyToken(token, secret) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new InvalidToken("not enough segments");
  const header = segment(parts[0], "the header");
  if (header === null || typeof header !== "object" || header.alg !== "HS256") {
    throw new InvalidToken("the algorithm is not HS256");
  }
  if (!/^[A-Za-z0-9_-]*$/.test(parts[2])) throw new InvalidToken("the signature is not base64url");
  const expected = sign(`${parts[0]}.${parts[1]}`, secret);
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    throw new InvalidToken("signature verification failed");
  }
  const claims = segment(parts[1], "the payload");
  if (claims === null || typeof claims !== "object" || Array.isArray(claims)) {
    throw new InvalidToken("the payload is not a JSON object");
  }
  for (const claim of ["exp", "iat", "sub"]) {
    if (!(claim in claims)) throw new InvalidToken(`the token is missing the "${claim}" claim`);
  }
  if (!Number.isInteger(claims.exp)) throw new InvalidToken("expiration time (exp) must be an integer");
  if (!Number.isInteger(claims.iat)) throw new InvalidToken("issued at (iat) must be an integer");
  if (typeof claims.sub !== "string") throw new InvalidToken("subject (sub) must be a string");
  const now = Date.now() / 1000;
  if (claims.iat > now) throw new InvalidToken("the token is not yet valid (iat)");
  if (claims.exp <= now) throw new InvalidToken("signature has expired", true);
  return claims;
}

module.exports = { issueToken, verifyToken, InvalidToken };
