// Who a request is, from its Bearer token; the same answers as shop/auth.py (401 with a
// WWW-Authenticate challenge per RFC 6750, 403 for another user's token, 503 when tokens are off).
"use strict";

const { DomainError } = require("./errors");
const { verifyToken, InvalidToken } = require("./tokens");

function unauthorized(detail, code = "unauthorized", bearerError = null) {
  let challenge = "Bearer";
  if (bearerError) {
    const description = detail.replace(/[^ -~]|["\\]/g, "").slice(0, 200);
    challenge = `Bearer error="${bearerError}", error_description="${description}"`;
  }
  return new DomainError(401, code, detail, { "www-authenticate": challenge });
}

function secret(settings) {
  if (settings.jwtSecret === null) {
    throw new DomainError(503, "auth_not_configured", "tokens are off: the service was started without SHOP_JWT_SECRET");
  }
  return settings.jwtSecret;
}

function bearerUser(req, settings) {
  const header = req.headers.authorization || "";
  if (!header) {
    throw unauthorized("this request needs a token: send `Authorization: Bearer <token>` (get one at POST /auth/token)");
  }
  const space = header.indexOf(" ");
  const scheme = space < 0 ? header : header.slice(0, space);
  const token = space < 0 ? "" : header.slice(space + 1).trim();
  if (scheme.toLowerCase() !== "bearer" || !token) {
    throw unauthorized("the Authorization header must be `Bearer <token>`", "invalid_token", "invalid_request");
  }
  let claims;
  try {
    claims = verifyToken(token, secret(settings));
  } catch (err) {
    if (!(err instanceof InvalidToken)) throw err;
    if (err.expired) {
      throw unauthorized("the token has expired: get a new one at POST /auth/token", "token_expired", "invalid_token");
    }
    throw unauthorized(`the token is not valid: ${err.message}`, "invalid_token", "invalid_token");
  }
  if (!/^[0-9]+$/.test(claims.sub)) throw unauthorized("the token names no user (claim `sub`)", "invalid_token", "invalid_token");
  return BigInt(claims.sub);
}

// PATCH and DELETE /users/{id}: with SHOP_AUTH_REQUIRED, only that user, proven by a token.
function requireSelf(req, settings, userId) {
  if (!settings.authRequired) return;
  const caller = bearerUser(req, settings);
  if (caller !== userId) throw new DomainError(403, "forbidden", `this token is for user ${caller}: it cannot change user ${userId}`);
}

module.exports = { requireSelf, secret, unauthorized };
