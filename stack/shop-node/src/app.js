// The user API in Express: the routes of shop/api/routes/{health,users,auth}.py, answering as
// they answer (statuses, bodies, headers), so that nginx can put either kind of replica behind
// one upstream and a client cannot tell which one served it, except by X-Instance.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const express = require("express");

const { DomainError, conflict, notFound, sendError } = require("./errors");
const body = require("./body");
const validate = require("./validate");
const { hashPassword, verifyPassword } = require("./passwords");
const { issueToken } = require("./tokens");
const auth = require("./auth");
const { query, userJson, COLUMNS } = require("./db");

const CONTRACT = path.join(__dirname, "..", "openapi.json");
// The paths this service serves, and their methods: the Allow header of a 405 and of OPTIONS.
const ROUTES = [
  [/^\/health$/, ["GET"]], [/^\/ready$/, ["GET"]], [/^\/stats$/, ["GET"]], [/^\/openapi\.json$/, ["GET"]],
  [/^\/users$/, ["GET", "POST"]], [/^\/users\/[^/]+$/, ["DELETE", "GET", "PATCH"]], [/^\/auth\/token$/, ["POST"]],
];

const allowed = (urlPath) => ROUTES.find(([pattern]) => pattern.test(urlPath))?.[1];

function sendJson(res, status, text, headers = {}) {
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

// An async route whose errors reach the error handler below.
const route = (handler) => (req, res, next) => Promise.resolve(handler(req, res)).catch(next);

function createApp(settings, pool) {
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.set("strict routing", true);
  app.set("query parser", "simple");

  app.use((req, res, next) => {   // which replica answered, on every answer (errors too)
    res.setHeader("x-instance", settings.instance);
    next();
  });
  app.use(body.admit(settings));
  app.use((req, res, next) => {   // a method the path does not serve: 405 with Allow; OPTIONS: 204
    const methods = allowed(req.path);
    if (methods === undefined) {
      const bare = req.path.replace(/\/+$/, "");
      if (bare !== req.path && allowed(bare)) {   // FastAPI redirects /users/ to /users
        const search = req.originalUrl.slice(req.originalUrl.indexOf("?") >= 0 ? req.originalUrl.indexOf("?") : req.originalUrl.length);
        res.writeHead(307, { location: `http://${req.headers.host}${bare}${search}`, "content-length": 0 });
        return res.end();
      }
      return next();
    }
    if (methods.includes(req.method)) return next();
    const allow = [...methods, "OPTIONS"].sort().join(", ");
    if (req.method === "OPTIONS") {
      res.writeHead(204, { allow });
      return res.end();
    }
    return sendError(res, 405, "method_not_allowed", "Method Not Allowed", { allow });
  });

  // -- health -------------------------------------------------------------------------------
  app.get("/health", (req, res) => sendJson(res, 200, JSON.stringify({ status: "ok", instance: settings.instance })));

  app.get("/ready", route(async (req, res) => {
    try {
      await query(pool, "SELECT 1");
    } catch (err) {
      return sendError(res, 503, "not_ready", `database: ${err.message}`);
    }
    sendJson(res, 200, JSON.stringify({ status: "ready", instance: settings.instance }));
  }));

  app.get("/stats", (req, res) => sendJson(res, 200, JSON.stringify({
    instance: settings.instance,
    runtime: `node ${process.version}, express ${require("express/package.json").version}`,
    pool: { max_size: settings.poolMaxSize, size: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount },
  })));

  app.get("/openapi.json", (req, res) => sendJson(res, 200, fs.readFileSync(CONTRACT, "utf8")));

  // -- users --------------------------------------------------------------------------------
  app.post("/users", route(async (req, res) => {
    const user = validate.userCreate(body.json(req));
    const passwordHash = typeof user.password === "string" ? await hashPassword(user.password) : null;
    let result;
    try {
      result = await query(pool, `INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
        [user.email, user.name, passwordHash]);
    } catch (err) {
      if (err.code === "23505") throw conflict(`a user with email ${user.email} already exists`);
      throw err;
    }
    sendJson(res, 201, userJson(result.rows[0]));
  }));

  app.get("/users/:id", route(async (req, res) => {
    const userId = validate.userId(req.params.id);
    const result = await query(pool, `SELECT ${COLUMNS} FROM users WHERE id = $1`, [userId.toString()]);
    if (result.rows.length === 0) throw notFound(`no user with id ${userId}`);
    sendJson(res, 200, userJson(result.rows[0]));
  }));

  app.get("/users", route(async (req, res) => {
    const { limit: asked, offset } = validate.page(req.query);
    const limit = Math.min(asked, settings.pageSizeMax);
    const result = await query(pool, `SELECT ${COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2`, [limit, offset]);
    sendJson(res, 200, `{"items":[${result.rows.map(userJson).join(",")}],"limit":${limit},"offset":${offset}}`);
  }));

  app.patch("/users/:id", route(async (req, res) => {
    const sent = body.json(req);   // bad JSON is a 422 before anything else, as in FastAPI
    const userId = validate.userId(req.params.id);
    auth.requireSelf(req, settings, userId);
    const update = validate.userUpdate(sent);
    let result;
    try {
      // COALESCE keeps a column when its parameter is NULL (not sent).
      result = await query(pool, "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name)"
        + ` WHERE id = $1 RETURNING ${COLUMNS}`, [userId.toString(), update.email ?? null, update.name ?? null]);
    } catch (err) {
      if (err.code === "23505") throw conflict(`a user with email ${update.email} already exists`);
      throw err;
    }
    if (result.rows.length === 0) throw notFound(`no user with id ${userId}`);
    sendJson(res, 200, userJson(result.rows[0]));
  }));

  app.delete("/users/:id", route(async (req, res) => {
    const userId = validate.userId(req.params.id);
    auth.requireSelf(req, settings, userId);
    const result = await query(pool, "DELETE FROM users WHERE id = $1 RETURNING id", [userId.toString()]);
    if (result.rows.length === 0) throw notFound(`no user with id ${userId}`);
    res.writeHead(204);
    res.end();
  }));

  // -- auth ---------------------------------------------------------------------------------
  app.post("/auth/token", route(async (req, res) => {
    const asked = validate.tokenRequest(body.json(req));
    const secret = auth.secret(settings);   // 503 before any work when tokens are off
    const result = await query(pool, "SELECT id::text AS id, password_hash FROM users WHERE lower(email) = lower($1)",
      [asked.email]);
    const row = result.rows[0];
    // An unknown email is hashed too: both answers take as long (no probing for accounts).
    if (!(await verifyPassword(asked.password, row ? row.password_hash : null))) {
      throw auth.unauthorized("wrong email or password", "invalid_credentials");
    }
    const ttl = Math.min(asked.ttl_s ?? settings.jwtTtlS, settings.jwtTtlS);
    const token = issueToken(secret, row.id, ttl);
    sendJson(res, 200, JSON.stringify({ access_token: token, token_type: "bearer", expires_in: ttl }),
      { "cache-control": "no-store" });
  }));

  // -- everything else ----------------------------------------------------------------------
  app.use((req, res) => sendError(res, 404, "not_found", "Not Found"));
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    if (err instanceof DomainError) return sendError(res, err.status, err.code, err.detail, err.headers);
    console.error(`unhandled error on ${req.method} ${req.path}:`, err);
    if (res.headersSent) return res.destroy();
    return sendError(res, 500, "internal_error",
      `the service failed on this request (${err.name || "Error"}): its log has the details`);
  });
  return app;
}

module.exports = { createApp, allowed };
