import { z } from "zod";

/**
 * The history's query parameters, parsed once for `GET /history` and `embeddings history`: `since`
 * is an ISO time or a duration back from now (`90m`, `24h`, `7d`, `2w`); `step` is `1m`, `5m`,
 * `1h`, `1d` (any whole number of m, h or d) or a bare number of minutes.
 */

export const MAX_STEP_MINUTES = 43_200;
const UNIT_MINUTES: Record<string, number> = { m: 1, h: 60, d: 1440, w: 10_080 };
const DURATION = /^(\d{1,6})\s*([mhdw])$/i;

export const SINCE_HELP = "an ISO time (2026-12-01T10:00:00Z) or a duration back from now: 30m, 1h, 24h, 7d";
export const STEP_HELP = `1m, 5m, 1h, 1d, or a whole number of minutes from 1 to ${MAX_STEP_MINUTES}`;

/** Minutes in `raw` ("5m", "1h", "1d", "15"), or null when it is not a step. */
export function stepMinutes(raw: string): number | null {
  const s = raw.trim();
  const bare = /^\d{1,6}$/.test(s) ? Number(s) : null;
  const m = DURATION.exec(s);
  const minutes =
    bare ?? (m && m[2]!.toLowerCase() !== "w" ? Number(m[1]) * UNIT_MINUTES[m[2]!.toLowerCase()]! : null);
  return minutes !== null && minutes >= 1 && minutes <= MAX_STEP_MINUTES ? minutes : null;
}

/** The time `raw` names: an ISO time, or `now` minus a duration. Null when it is neither. */
export function sinceTime(raw: string, now: Date): Date | null {
  const s = raw.trim();
  const m = DURATION.exec(s);
  if (m) return new Date(now.getTime() - Number(m[1]) * UNIT_MINUTES[m[2]!.toLowerCase()]! * 60_000);
  // Only full dates or date-times: Date.parse would also take "1" or "June".
  if (!/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : new Date(t);
}

/** Query or flags -> the SQL call's arguments; a bad value is a 400 / exit 2 naming the accepted forms. */
export function historyQuery(now: Date) {
  return z.object({
    target: z
      .string({ error: "target is required: ?target=<name> (embeddings targets list)" })
      .regex(/^[a-z][a-z0-9_]{0,47}$/, "target must be a registered target name"),
    since: z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (v === undefined || v === "") return new Date(now.getTime() - 24 * 3_600_000);
        const t = sinceTime(v, now);
        if (!t) ctx.addIssue({ code: "custom", message: `"${v}" is not a time: use ${SINCE_HELP}` });
        return t ?? now;
      }),
    step: z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (v === undefined || v === "") return 60;
        const n = stepMinutes(v);
        if (n === null) ctx.addIssue({ code: "custom", message: `"${v}" is not a step: use ${STEP_HELP}` });
        return n ?? 1;
      }),
  });
}
