import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Forks, not threads: PGlite's WASM heap and pg sockets are per process, and a crashed
    // worker cannot take the others down. Two workers even on 2 cores: most test time is spent
    // waiting on the database server, not on the CPU.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
