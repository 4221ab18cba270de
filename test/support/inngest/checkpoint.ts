/**
 * The Inngest API endpoint the SDK posts checkpoints to in serve mode (api/api.js:303-322
 * `checkpointStepsAsync`; server pkg/api/apiv1/checkpoint.go `CheckpointAsyncSteps`): request parsing,
 * authentication and the replies. What a checkpoint does to a run is the executor's business.
 */
import { hashSigningKey, type SdkOp } from "./protocol.js";

/** A parsed `POST /v1/checkpoint/{runId}/async`. */
export interface CheckpointPost {
  /** From the URL; the body's `run_id` must agree. */
  runId: string;
  fnId: string;
  qiId: string;
  requestId?: string;
  generationId?: number;
  /** The ops to memoise: `StepRun` (and the server's older `Step`). */
  stepRuns: SdkOp[];
}

const PATH = /^\/v1\/checkpoint\/([^/]+)\/async\/?$/;
/** Lazy ops the SDK may flush with a checkpoint (engine.js:293-294); nothing to store for them here. */
const LAZY_OPS = new Set(["DeferAdd", "DeferAbort"]);

/** The run id when `req` is a checkpoint post. The SDK drops any path on its API base URL (api.js:72-92). */
export function checkpointRunId(req: Request): string | undefined {
  if (req.method !== "POST") return undefined;
  const m = PATH.exec(new URL(req.url).pathname);
  return m ? decodeURIComponent(m[1] as string) : undefined;
}

/** The post, or the reply when it is malformed, unauthorised or carries an op that cannot be checkpointed. */
export async function readCheckpoint(
  req: Request,
  runId: string,
  signingKey: string | undefined,
): Promise<CheckpointPost | Response> {
  // Dev mode sends `Bearer ` with no key (fetch trims it); cloud mode the hashed signing key.
  if (signingKey && req.headers.get("authorization") !== `Bearer ${hashSigningKey(signingKey)}`) {
    return reject(401, "Unauthorized", runId);
  }
  let body: Record<string, unknown>;
  try {
    body = (await req.json()) as Record<string, unknown>;
  } catch (err) {
    return reject(400, `invalid request body: ${String(err)}`, runId);
  }
  if (body.run_id !== runId)
    return reject(400, `run_id ${String(body.run_id)} does not match the URL`, runId);
  if (typeof body.fn_id !== "string" || typeof body.qi_id !== "string") {
    return reject(400, "fn_id and qi_id are required", runId);
  }
  const steps = Array.isArray(body.steps) ? (body.steps as SdkOp[]) : [];
  const stepRuns: SdkOp[] = [];
  for (const step of steps) {
    if (step?.op === "StepRun" || step?.op === "Step") stepRuns.push(step);
    // checkpoint.go:517-523 and the default case of its op switch: only sync steps can be checkpointed.
    else if (!LAZY_OPS.has(step?.op))
      return reject(400, `cannot checkpoint opcode: ${String(step?.op)}`, runId);
  }
  return {
    runId,
    fnId: body.fn_id,
    qiId: body.qi_id,
    ...(typeof body.request_id === "string" ? { requestId: body.request_id } : {}),
    ...(typeof body.generation_id === "number" ? { generationId: body.generation_id } : {}),
    stepRuns,
  };
}

/** The real server writes an empty 200; the SDK ignores the body of any 2xx (api.js:318-321). */
export const accept = (): Response => Response.json({});

/**
 * 409 is `ErrStaleDispatch`: the SDK stops at once and fails the request with 400 + no-retry
 * (engine.js:586-595). 413 (limits) and other errors make it retry the post 5 times with backoff, then
 * return the steps in its 206 body instead (engine.js:596-606).
 */
export const reject = (status: 400 | 401 | 409 | 413, message: string, runId: string): Response =>
  Response.json({ error: message, status, data: { run_id: runId } }, { status });
