import { defineConfig } from "vitest/config";

/**
 * `EMBEDDINGS_GATE_SELFTEST` runs only the gate's own fixtures (test/gate): a test that must fail,
 * and a global setup or teardown that must fail. `.ci/run` checks that each makes `npm test` exit
 * non-zero; they never run in the normal suite.
 */
const selftest = process.env.EMBEDDINGS_GATE_SELFTEST;

export default defineConfig({
  test: {
    include: selftest ? ["test/gate/**/*.selftest.ts"] : ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Forks, not threads: PGlite's WASM heap and pg sockets are per process, and a crashed
    // worker cannot take the others down. Two workers even on 2 cores: most test time is spent
    // waiting on the database server, not on the CPU.
    pool: "forks",
    maxWorkers: 2,
    // Hang guards, not speed expectations: a test that takes 5 s on an idle machine may take 40 s
    // on a loaded one, and must still pass. Timing targets live in `npm run bench`.
    testTimeout: 240_000,
    hookTimeout: 240_000,
    teardownTimeout: 120_000,
    // The default reporter for people; a JSON report for `.ci/run`'s closing summary line.
    reporters: ["default", ["json", { outputFile: "test-output/vitest.json" }]],
  },
});
