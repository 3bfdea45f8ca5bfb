// The Express user service as a process: `node src/server.js`, settings from SHOP_* (config.js),
// HOST and PORT. SIGTERM: stop accepting, let requests in flight finish (10 s at most), close the pool.
"use strict";

const http = require("node:http");
const config = require("./config");
const { createApp, allowed } = require("./app");
const { createPool } = require("./db");
const { resolveInstance } = require("./instance");

async function main() {
  let settings;
  try {
    settings = { ...config.load(), instance: await resolveInstance() };
  } catch (err) {
    console.error(`shop-node: bad setting: ${err.message}`);
    process.exit(2);
  }
  const pool = createPool(settings);
  const server = http.createServer({
    headersTimeout: settings.headersTimeoutS * 1000,   // a request's headers within this of its first byte
    requestTimeout: 0,                                  // the body's own deadline is body.js's (408)
    keepAliveTimeout: 5000,
  }, createApp(settings, pool));
  // A request Node cannot even parse: a JSON 400 (uvicorn's, via shop/http_protocol.py), never a bare close.
  // A well-formed method Node's parser does not know (QUERY on Node 18) is a method the path does
  // not serve: 405 with Allow, as for any other, or 404 on a path the service does not have.
  server.on("clientError", (err, socket) => {
    if (!socket.writable || err.code === "ECONNRESET") return socket.destroy();
    let [status, code, detail, extra] = [400, "bad_request", `the request could not be read: ${err.code || err.message}`, ""];
    const line = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\/[^ ?]*)(?:\?[^ ]*)? HTTP\/1\.[01]\r\n/.exec(
      err.code === "HPE_INVALID_METHOD" && err.rawPacket ? err.rawPacket.toString("latin1") : "");
    if (line) {
      const methods = allowed(line[2]);
      [status, code, detail] = methods ? [405, "method_not_allowed", "Method Not Allowed"] : [404, "not_found", "Not Found"];
      if (methods) extra = `allow: ${[...methods, "OPTIONS"].sort().join(", ")}\r\n`;
    }
    const reason = { 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed" }[status];
    const body = JSON.stringify({ error: code, detail });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}`
      + `\r\nconnection: close\r\n${extra}x-instance: ${settings.instance}\r\n\r\n${body}`);
  });
  server.listen(settings.port, settings.host, () => {
    console.log(`instance ${settings.instance} ready: node ${process.version} on ${settings.host}:${settings.port}, `
      + `pool up to ${settings.poolMaxSize}`);
  });
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`instance ${settings.instance}: ${signal}, finishing requests in flight`);
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    server.close(() => pool.end().finally(() => {
      console.log(`instance ${settings.instance}: pool closed`);
      process.exit(0);
    }));
    server.closeIdleConnections();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main();
