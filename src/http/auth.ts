import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";

/**
 * `Authorization: Bearer <EMBEDDINGS_ADMIN_TOKEN>` on the operations endpoints. Both sides are
 * hashed before timingSafeEqual, so neither the content nor the length of the token leaks through
 * timing. With no token configured the routes answer 503 and say what to set: never open by default.
 */

export const OPS_PATHS = [
  "/status",
  "/history",
  "/dead-letters",
  "/metrics",
  "/batch",
  "/retry",
  "/cancel",
] as const;

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** Whether an Authorization header carries the admin token (constant time; false when none is set). */
export function isAdmin(token: string | undefined, header: string | undefined): boolean {
  if (!token) return false;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  return timingSafeEqual(digest(match?.[1] ?? ""), digest(token)) && match !== null;
}

export function adminAuth(token: string | undefined): MiddlewareHandler {
  const expected = token ? digest(token) : null;
  return async (c, next) => {
    if (!expected) {
      return c.json(
        {
          error:
            "operations endpoints are disabled: set EMBEDDINGS_ADMIN_TOKEN to a long random value (e.g. openssl rand -hex 32) and send it as Authorization: Bearer <token>",
        },
        503,
      );
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(c.req.header("authorization") ?? "");
    const given = digest(match?.[1] ?? "");
    // Compare even when the header is missing: the answer takes the same time either way.
    const ok = timingSafeEqual(given, expected) && match !== null;
    if (!ok) {
      c.header("WWW-Authenticate", 'Bearer realm="embeddings-sync"');
      return c.json(
        {
          error: match
            ? "invalid admin token"
            : "missing admin token: send Authorization: Bearer <EMBEDDINGS_ADMIN_TOKEN>",
        },
        401,
      );
    }
    await next();
  };
}
