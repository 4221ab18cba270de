import type { Context } from "hono";
import { z } from "zod";
import { InputError } from "../lib/errors.js";

/** Request bodies and query parameters, validated once; a bad one is a 400 naming the field. */

const targetName = z.string().regex(/^[a-z][a-z0-9_]{0,47}$/, "target must be a registered target name");
const rowId = z.union([z.string().min(1), z.number()]).transform(String);

export const batchBody = z.object({
  target: targetName,
  batchSize: z.number().int().min(1).max(2048).optional(),
  jobId: z.uuid("jobId must be a UUID").optional(),
});

export const retryBody = z.object({
  target: targetName,
  ids: z.array(rowId).min(1).max(10_000).optional(),
  deadLetter: z.boolean().optional(),
  completed: z.boolean().optional(),
  /** A chunked target: these chunk indexes of the one document in `ids`. */
  chunks: z.array(z.number().int().min(0)).min(1).max(10_000).optional(),
  limit: z.number().int().min(1).max(100_000).optional(),
});

export const cancelBody = z.object({ jobId: z.uuid("jobId must be a UUID") });

export async function jsonBody<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    throw new InputError("send a JSON body with content-type: application/json");
  }
  return schema.parse(raw);
}

export function intQuery(c: Context, name: string, min: number, max: number): number | undefined {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InputError(`${name} must be a whole number from ${min} to ${max}`);
  return n;
}
