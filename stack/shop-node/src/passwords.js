// Salted scrypt hashes in the FastAPI service's own format (shop/auth.py):
// scrypt$N$r$p$<salt>$<hash>, base64url without padding. A user who signed up on one kind of
// replica logs in on the other: the hash is data in the shared database, not a per-language secret.
"use strict";

const crypto = require("node:crypto");
const { promisify } = require("node:util");

const scrypt = promisify(crypto.scrypt);
const N = 2 ** 14, R = 8, P = 1, KEYLEN = 32;
const MAXMEM = 64 * 1024 * 1024;   // scrypt needs 128 * N * r bytes (16 MiB); Node's default cap is 32 MiB

const b64 = (buf) => buf.toString("base64url");
const unb64 = (text) => Buffer.from(text, "base64url");

async function hashPassword(password, salt = crypto.randomBytes(16)) {
  const digest = await scrypt(Buffer.from(password, "utf8"), salt, KEYLEN, { N, r: R, p: P, maxmem: MAXMEM });
  return `scrypt$${N}$${R}$${P}$${b64(salt)}$${b64(digest)}`;
}

let decoy = null;   // unknown users are checked against this, so they cost as much time as known ones

async function verifyPassword(password, stored) {
  const known = typeof stored === "string" && stored.startsWith("scrypt$");
  if (!known && decoy === null) decoy = await hashPassword(crypto.randomBytes(12).toString("base64url"));
  const [, n, r, p, salt, digest] = (known ? stored : decoy).split("$");
  const expected = unb64(digest);
  const candidate = await scrypt(Buffer.from(password, "utf8"), unb64(salt), expected.length,
    { N: Number(n), r: Number(r), p: Number(p), maxmem: MAXMEM });
  return crypto.timingSafeEqual(candidate, expected) && known;
}

module.exports = { hashPassword, verifyPassword };
