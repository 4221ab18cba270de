import type { Hono } from "hono";
import type { InngestClient } from "../functions/client.js";
import type { FunctionDeps } from "../functions/deps.js";

/** Operations routes (status, metrics, batch, retry, cancel, dashboard): filled in by the ops work. */
export function registerOpsRoutes(_app: Hono, _deps: FunctionDeps, _options: { inngest: InngestClient }): void {}
