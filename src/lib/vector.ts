/**
 * Vectors cross the SQL API as pgvector text literals ("[x,y,...]"): the one format every
 * transport carries unchanged (pg parameters, PostgREST JSON, PGlite) and that casts to vector,
 * halfvec and (after translate) real[] / double precision[].
 * Nine significant digits round-trip any float32 exactly.
 */
export function formatVector(vector: ArrayLike<number>): string {
  let out = "[";
  for (let i = 0; i < vector.length; i++) {
    const v = vector[i]!;
    if (!Number.isFinite(v)) throw new RangeError(`vector component ${i} is not a finite number (${v})`);
    if (i > 0) out += ",";
    out += v === 0 ? "0" : Number(v.toPrecision(9)).toString();
  }
  return `${out}]`;
}

/** pgvector text output ("[1,2,3]") or a Postgres array ("{1,2,3}") back to numbers. */
export function parseVector(text: string): number[] {
  const inner = text.trim().slice(1, -1).trim();
  return inner === "" ? [] : inner.split(",").map(Number);
}
