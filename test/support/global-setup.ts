import type { TestProject } from "vitest/node";
import { buildTemplate, startPgServer } from "./pg-server.js";

/**
 * Runs once per `vitest run`, in the main process: starts the server, migrates the template and
 * hands the connection info to test files (`inject("pgServer")`, used by createTestDatabase).
 * A failure here fails the run (non-zero exit): the server is started without anything that
 * could override the process's exit code (test/support/pg-cluster.ts).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const selftest = process.env.EMBEDDINGS_GATE_SELFTEST;
  if (selftest === "setup-error") throw new Error("gate self-test: global setup fails on purpose");
  const server = await startPgServer();
  try {
    await buildTemplate(server);
  } catch (err) {
    await server.stop();
    throw err;
  }
  project.provide("pgServer", { adminUrl: server.adminUrl, templateDatabase: server.templateDatabase });
  return async () => {
    try {
      await server.stop();
      if (selftest === "teardown-error") throw new Error("gate self-test: global teardown fails on purpose");
    } catch (err) {
      // vitest 4 prints a teardown error ("error during close") but keeps exit code 0: set it here.
      process.exitCode = 1;
      throw err;
    }
  };
}
