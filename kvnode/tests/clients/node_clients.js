// ioredis and node-redis against a raftkv cluster: run by kvnode/tests/clients.rs.
//
// Usage: node node_clients.js LEADER_PORT FOLLOWER_PORT
// (NODE_PATH names the node_modules holding ioredis and redis). Every check throws on
// failure; the last line printed is the number of checks that passed.

const assert = require("node:assert/strict");
const Redis = require("ioredis");
const { createClient } = require("redis");

const [leader, follower] = process.argv.slice(2).map(Number);
let checks = 0;
function check(condition, what) {
  assert.ok(condition, what);
  checks += 1;
}

async function withIoredis() {
  const plain = new Redis({ port: follower, host: "127.0.0.1" });
  await plain.flushall();
  // db: 1 makes ioredis send SELECT 1 when it connects.
  const db1 = new Redis({ port: follower, host: "127.0.0.1", db: 1 });
  check((await db1.set("io-key", "one")) === "OK", "ioredis SET in db 1");
  check((await plain.get("io-key")) === null, "the db 1 write is not in db 0");
  const otherDb1 = new Redis({ port: leader, host: "127.0.0.1", db: 1 });
  check((await otherDb1.get("io-key")) === "one", "another connection sees it in db 1");

  const result = await db1.multi().set("io-n", "1").incr("io-n").get("io-n").exec();
  assert.deepEqual(result, [[null, "OK"], [null, 2], [null, "2"]]);
  checks += 1;

  const pipeline = db1.pipeline();
  for (let i = 0; i < 50; i++) pipeline.incr("io-piped");
  pipeline.get("io-piped");
  const piped = await pipeline.exec();
  check(piped.length === 51 && piped[50][1] === "50", "ioredis pipeline of 50 INCRs");

  const aborted = await db1
    .multi()
    .set("io-x", "v")
    .incr("io-x")
    .exec();
  check(aborted[0][1] === "OK" && aborted[1][0] instanceof Error, "runtime error stays per command");

  const info = await plain.info();
  check(/^redis_version:/m.test(info) && /^cluster_enabled:0/m.test(info), "ioredis INFO");
  await Promise.all([plain.quit(), db1.quit(), otherDb1.quit()]);
}

async function withNodeRedis() {
  const client = createClient({ url: `redis://127.0.0.1:${follower}/1` });
  client.on("error", (error) => {
    throw error;
  });
  await client.connect();
  const replies = await client.multi().set("nr-n", "5").incrBy("nr-n", 3).get("nr-n").exec();
  assert.deepEqual(replies, ["OK", 8, "8"]);
  checks += 1;
  // Commands sent without awaiting each other are pipelined on one connection.
  const many = await Promise.all(Array.from({ length: 20 }, () => client.incr("nr-piped")));
  check(many[19] === 20 && new Set(many).size === 20, "node-redis pipelined INCRs");
  const db0 = createClient({ url: `redis://127.0.0.1:${leader}` });
  await db0.connect();
  check((await db0.get("nr-n")) === null, "node-redis database 1 writes stay out of db 0");
  await db0.select(1);
  check((await db0.get("nr-n")) === "8", "and are in db 1");
  await Promise.all([client.quit(), db0.quit()]);
}

(async () => {
  await withIoredis();
  await withNodeRedis();
  console.log(`ioredis and node-redis: ${checks} checks passed`);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
