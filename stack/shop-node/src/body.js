// Admit a request body before any route sees it, or answer why not, as the FastAPI service's
// RequestBody middleware does (shop/middleware.py): over the limit → 413 once read to its end
// (up to 1 MiB; a larger declared one at once), not all there in time → 408, a body that is
// not JSON → 415. Then the JSON itself: bytes that are not UTF-8 → 400, bad syntax → 422.
"use strict";

const { sendError, DomainError, ValidationFailed } = require("./errors");
const strictjson = require("./strictjson");

const DRAIN_MAX_BYTES = 1024 * 1024;
const CLOSE = { connection: "close" };
const WITHOUT_BODY = new Set(["GET", "HEAD", "OPTIONS", "DELETE"]);
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isJson(contentType) {
  const media = (contentType || "").split(";", 1)[0].trim().toLowerCase();
  return media === "application/json" || (media.startsWith("application/") && media.endsWith("+json"));
}

function admit(settings) {
  return (req, res, next) => {
    if (WITHOUT_BODY.has(req.method)) return next();
    const tooLarge = () => sendError(res, 413, "payload_too_large", `request body over ${settings.maxBodyBytes} bytes`, CLOSE);
    const declared = req.headers["content-length"];
    if (declared !== undefined && (!/^[0-9]+$/.test(declared) || Number(declared) > DRAIN_MAX_BYTES)) {
      return tooLarge();
    }
    const chunks = [];
    let size = 0, done = false;
    const finish = (answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      answer();
    };
    const timer = setTimeout(() => finish(() => sendError(res, 408, "request_timeout",
      `the request body did not arrive within ${settings.bodyTimeoutS} s`, CLOSE)), settings.bodyTimeoutS * 1000);
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > DRAIN_MAX_BYTES) return finish(tooLarge);
      if (size <= settings.maxBodyBytes) chunks.push(chunk);   // past the limit the rest is only read
    });
    req.on("aborted", () => finish(() => res.destroy()));
    req.on("error", () => finish(() => res.destroy()));
    req.on("end", () => finish(() => {
      if (size > settings.maxBodyBytes) return tooLarge();
      const raw = Buffer.concat(chunks);
      if (raw.length && !isJson(req.headers["content-type"])) {
        const sent = (req.headers["content-type"] || "no Content-Type").slice(0, 100);
        return sendError(res, 415, "unsupported_media_type",
          `the body must be JSON (Content-Type: application/json), not ${sent}`);
      }
      req.rawBody = raw;
      next();
    }));
  };
}

// The parsed body of an admitted request: undefined when there is none.
function json(req) {
  if (!req.rawBody || req.rawBody.length === 0) return undefined;
  let text;
  try {
    text = UTF8.decode(req.rawBody);
  } catch {
    throw new DomainError(400, "bad_request", "There was an error parsing the body");
  }
  try {
    return strictjson.parse(text);
  } catch (err) {
    throw new ValidationFailed([{ loc: ["body", err.position ?? 0], msg: "JSON decode error", type: "json_invalid" }]);
  }
}

module.exports = { admit, json };
