// Every knob of the service, from the same SHOP_* environment as the FastAPI user service
// (shop/config.py): a replica of either kind starts from one set of settings.
"use strict";

function number(name, fallback, { min = -Infinity, max = Infinity } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(`${name}=${raw} is not a number in [${min}, ${max}]`);
  }
  return value;
}

function flag(name) {
  return ["1", "true", "yes", "on"].includes((process.env[name] || "").toLowerCase());
}

function load() {
  const jwtSecret = process.env.SHOP_JWT_SECRET || null;
  if (jwtSecret !== null && jwtSecret.length < 32) {
    throw new Error("SHOP_JWT_SECRET must be at least 32 characters");
  }
  return {
    databaseUrl: process.env.SHOP_DATABASE_URL || "postgresql://shop@127.0.0.1:5432/shop",
    host: process.env.HOST || "127.0.0.1",
    port: number("PORT", 8000, { min: 1, max: 65535 }),
    poolMaxSize: number("SHOP_POOL_MAX_SIZE", 10, { min: 1 }),
    acquireTimeoutS: number("SHOP_ACQUIRE_TIMEOUT_S", 2, { min: 0.001 }),
    statementTimeoutMs: number("SHOP_STATEMENT_TIMEOUT_MS", 5000, { min: 0 }),
    headersTimeoutS: number("SHOP_HEADERS_TIMEOUT_S", 10, { min: 0.001, max: 300 }),
    maxBodyBytes: number("SHOP_MAX_BODY_BYTES", 64 * 1024, { min: 1024 }),
    bodyTimeoutS: number("SHOP_BODY_TIMEOUT_S", 10, { min: 0.001, max: 300 }),
    pageSizeMax: number("SHOP_PAGE_SIZE_MAX", 100, { min: 1 }),
    jwtSecret,
    jwtTtlS: number("SHOP_JWT_TTL_S", 900, { min: 1, max: 24 * 3600 }),
    authRequired: flag("SHOP_AUTH_REQUIRED"),
  };
}

module.exports = { load };
