/**
 * Where a batch's database time goes, statement by statement: `npm run bench:statements [-- --dims
 * 384|1536] [--batch 500] [--rounds 10] [--pg15]`.
 *
 * One session on the bench's server settings and rows claims and writes batches through the real
 * SQL API and the direct transport (binary vectors, as `embeddings run` sends them). PostgreSQL's own
 * auto_explain reports every statement the SQL functions run, nested ones included, with its
 * executor time (ANALYZE with per-node timing off, parameters not logged: logging a 768,000-float
 * parameter would cost more than the write). The first two batches warm up and are not counted.
 *
 * This is a profile, not a throughput figure: one session, no provider, no worker CPU. `npm run
 * bench` measures throughput.
 */
import pg from "pg";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { encodeFloat4Array } from "../src/lib/db/vector.js";
import { createBenchTable, registerBenchTarget, TARGET } from "./data.js";
import { PG15_BIN, startBenchPg } from "./pg.js";

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`--${name} needs a positive whole number (got ${process.argv[at + 1] ?? "nothing"})`);
  }
  return value;
}

const dims = flag("dims", 384);
const batch = flag("batch", 500);
const rounds = flag("rounds", 10);
const WARM_UP = 2;
/** --plan <text>: also print the last batch's plan of the statement whose text contains it. */
const planOf = process.argv.includes("--plan") ? process.argv[process.argv.indexOf("--plan") + 1] : undefined;
let lastPlan = "";

const server = await startBenchPg({ binDir: process.argv.includes("--pg15") ? PG15_BIN : undefined });
try {
  const url = await server.createDatabase("bench_statements");
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await createBenchTable(setup, batch * (rounds + WARM_UP));
  await setup.end();

  // One connection, so the session settings below apply to every call.
  const api = createPostgresApi({ connectionString: url, poolSize: 1 });
  const notices: string[] = [];
  api.pool.on("connect", (client) => client.on("notice", (n) => notices.push(n.message ?? "")));
  const store = new EmbeddingStore(api);
  await registerBenchTarget(store, dims);
  for (let after: string | null = null; ; ) {
    const page = await store.enqueue(TARGET, after, 5000);
    if (page.done) break;
    after = page.last;
  }
  await api.exec(`LOAD 'auto_explain';
    SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
    SET auto_explain.log_analyze = on; SET auto_explain.log_timing = off;
    SET auto_explain.log_parameter_max_length = 0; SET auto_explain.log_level = notice`);

  // Values that do not compress, like a real model's: a repeating pattern would let TOAST compress
  // the stored vector and hide what compression attempts cost.
  const vector = Array.from({ length: dims }, (_, i) => Math.fround(Math.sin(i * 12.9898 + 78.233) * 0.5));
  const totals = new Map<string, number>();
  const add = (key: string, ms: number) => totals.set(key, (totals.get(key) ?? 0) + ms);
  let counted = 0;
  for (let round = 0; round < rounds + WARM_UP; round++) {
    notices.length = 0;
    const t0 = performance.now();
    const claim = await store.claim(TARGET, "profile", batch, 300);
    const t1 = performance.now();
    const items = claim.items.map((i) => ({ id: i.id, hash: i.hash, vector, tokens: 30 }));
    await store.writeCounted(TARGET, "profile", items, null, {});
    const t2 = performance.now();
    if (items.length < batch) throw new Error(`claimed ${items.length} of ${batch}: not enough rows queued`);
    if (round < WARM_UP) continue;
    counted++;
    // What the write call's wall time includes on the client: the binary parameter's encoding.
    const e0 = performance.now();
    encodeFloat4Array(items.map((i) => i.vector));
    add("(client) encoding the batch's vectors (part of the write call)", performance.now() - e0);
    add("(client) claim call, wall", t1 - t0);
    add("(client) write call, wall", t2 - t1);
    for (const n of notices) {
      const ms = /duration: ([0-9.]+) ms/.exec(n);
      if (!ms) continue;
      const text = (n.split("Query Text:")[1] ?? "").split(/\n\S/)[0]!;
      if (planOf && text.includes(planOf)) lastPlan = n;
      add(
        text
          .replace(/--[^\n]*/g, " ")
          .replace(/\s+/g, " ")
          .trim()
          .slice(0, 100),
        Number(ms[1]),
      );
    }
  }
  await api.close();

  process.stdout.write(
    `PostgreSQL ${server.version}, ${dims} dims, batch ${batch}, ${counted} batches counted; ms per batch (µs per row)\n`,
  );
  for (const [key, ms] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, 16)) {
    const perBatch = ms / counted;
    process.stdout.write(
      `${perBatch.toFixed(1).padStart(8)} (${((perBatch * 1000) / batch).toFixed(0).padStart(4)})  ${key}\n`,
    );
  }
  if (planOf) process.stdout.write(`\n${lastPlan || `no statement contains ${JSON.stringify(planOf)}`}\n`);
} finally {
  await server.stop();
}
