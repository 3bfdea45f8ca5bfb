// Which replica this is (X-Instance), found as the shop images' entrypoint finds it
// (stack/deploy/shop/docker-entrypoint.py): SHOP_INSTANCE when given; on Kubernetes the name the
// driver writes into SHOP_INSTANCE_FILE once the pod runs (waited for); under Compose the
// container's Compose name from Docker's DNS (<project>-express-2 → express-2); else the hostname.
"use strict";

const dns = require("node:dns");
const fs = require("node:fs");
const os = require("node:os");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function givenName(path, waitS) {
  const deadline = Date.now() + waitS * 1000;
  for (;;) {
    try {
      const name = fs.readFileSync(path, "utf8").trim();
      if (name) return name;
    } catch { /* not written yet */ }
    if (Date.now() > deadline) return null;
    await sleep(100);
  }
}

async function composeName(service) {
  const addresses = Object.values(os.networkInterfaces()).flat()
    .filter((a) => a && a.family === "IPv4" && !a.internal).map((a) => a.address);
  const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });   // the DNS server, not /etc/hosts
  for (const address of addresses) {
    try {
      // resolve(PTR), not reverse(): c-ares' reverse drops names that are not valid host names, and
      // Compose's network names hold an underscore (<project>_default).
      const arpa = `${address.split(".").reverse().join(".")}.in-addr.arpa`;
      for (const name of await resolver.resolve(arpa, "PTR")) {
        const m = new RegExp(`[-_]${service}[-_]([0-9]+)\\.`).exec(`${name}.`);
        if (m) return `${service}-${m[1]}`;
      }
    } catch { /* no PTR record: not under Compose */ }
  }
  return null;
}

async function resolveInstance(env = process.env) {
  if (env.SHOP_READY_FILE) fs.rmSync(env.SHOP_READY_FILE, { force: true });
  if (env.SHOP_INSTANCE_FILE) {
    const name = await givenName(env.SHOP_INSTANCE_FILE, Number(env.SHOP_INSTANCE_WAIT_S || 120));
    if (name) return name;
    console.error(`shop-node: no member name in ${env.SHOP_INSTANCE_FILE}: using ${env.SHOP_INSTANCE || os.hostname()}`);
  }
  if (env.SHOP_INSTANCE) return env.SHOP_INSTANCE;
  if (env.SHOP_SERVICE) return (await composeName(env.SHOP_SERVICE)) || os.hostname();
  return `${os.hostname()}-${process.pid}`;
}

module.exports = { resolveInstance };
