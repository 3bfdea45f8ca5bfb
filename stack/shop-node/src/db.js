// The pg connection pool, and the user rows as the API answers them. Ids are Postgres bigints:
// they travel as text and are written into the JSON as digits (a JS number would round above
// 2**53). created_at is formatted by Postgres as the FastAPI service writes it (microseconds, Z).
"use strict";

const { Pool } = require("pg");
const { unavailable } = require("./errors");

const COLUMNS = "id::text AS id, email, name, "
  + "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') AS created_at";

function createPool(settings) {
  const pool = new Pool({
    connectionString: settings.databaseUrl,
    max: settings.poolMaxSize,
    connectionTimeoutMillis: settings.acquireTimeoutS * 1000,   // waiting for a connection: 503, not a hang
    statement_timeout: settings.statementTimeoutMs || undefined,
    application_name: `shop-users-node:${settings.instance}`,
  });
  pool.on("error", () => {});   // an idle connection that died: the next query opens another
  return pool;
}

// A lost or unreachable database (or one too slow to answer) becomes a 503, like shop/db.py.
const UNAVAILABLE_CODES = new Set(["57014", "57P01", "57P02", "57P03", "08000", "08003", "08006"]);

async function query(pool, text, values) {
  try {
    return await pool.query(text, values);
  } catch (err) {
    if (err.code === "23505") throw err;   // unique violation: the route says which conflict
    if (UNAVAILABLE_CODES.has(err.code) || !err.code || /timeout|terminat|ECONNREFUSED|ECONNRESET/i.test(err.message)) {
      throw unavailable(`database unavailable or too slow: ${err.code || err.message}`);
    }
    throw err;
  }
}

function userJson(row) {
  const created = row.created_at.replace(/\.0{6}$/, "");   // pydantic leaves out a zero fraction
  return `{"id":${row.id},"email":${JSON.stringify(row.email)},"name":${JSON.stringify(row.name)},`
    + `"created_at":${JSON.stringify(`${created}Z`)}}`;
}

module.exports = { createPool, query, userJson, COLUMNS };
