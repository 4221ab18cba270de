import { InvalidArgumentError } from "commander";
import { InputError } from "../lib/errors.js";

/** Argument parsers shared by the verbs: each refuses bad input naming the flag and the range. */

export const positiveInt =
  (name: string, max = 1_000_000) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max}`);
    }
    return n;
  };

export const nonNegativeInt =
  (name: string, max = 1_000_000) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from 0 to ${max}`);
    }
    return n;
  };

export const columnList = (value: string): string[] => {
  const cols = value
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean);
  if (cols.length === 0)
    throw new InvalidArgumentError("give at least one column, e.g. --content title,body");
  return cols;
};

/** Repeatable, comma-separable: `--row 1 --row 2,3`. */
export const collectIds = (value: string, previous: string[]): string[] => [
  ...previous,
  ...value
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean),
];

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `--priority created_at`, `--priority created_at desc` (the option takes the words after it), or
 * one word `created_at:asc`: a column and an optional direction.
 */
export function priorityArg(words: readonly string[]): { column: string; order?: "asc" | "desc" } {
  const parts = words.flatMap((w) => w.split(/[\s:]+/)).filter(Boolean);
  const [column, order, ...rest] = parts;
  if (!column || rest.length > 0 || (order !== undefined && order !== "asc" && order !== "desc")) {
    throw new InputError(
      `--priority takes a column and optionally asc or desc, e.g. --priority created_at desc (got "${words.join(" ")}")`,
    );
  }
  return order ? { column, order } : { column };
}
