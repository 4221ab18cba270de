/**
 * Vectors cross the SQL API as pgvector text literals ("[x,y,...]"): the one format every
 * transport carries unchanged (pg parameters, PostgREST JSON, PGlite) and that casts to vector,
 * halfvec and (after swapping the brackets) real[] / double precision[].
 *
 * Each component is written with nine significant digits, which round-trips any float32 exactly.
 * Formatting was the worker's largest CPU cost at thousands of rows per second (bench/README.md), so
 * the digits come from integer arithmetic written straight into a reusable byte buffer: no
 * Number#toPrecision, no string per component, one flat string per vector (about 6x faster than
 * `Number(v.toPrecision(9)).toString()` joined with commas, and far less garbage).
 * Exactness holds even if the scaled product is off by one in the last digit: a nine-digit decimal
 * within one unit of the ninth digit of a float32 is still nearer to it than to either neighbour
 * (their spacing is at least 1.49 units of the ninth digit), so the database parses the same float.
 */

/** 10^k for k in -60..60, correctly rounded (the literal parser rounds once). Index 68 - e is 10^(8 - e). */
const POW10: readonly number[] = Array.from({ length: 121 }, (_, i) => Number(`1e${i - 60}`));

const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const LOWER_E = 0x65;
/** Longest component: "-0." + 12 zeros + 9 digits, or a float64 outlier through toPrecision. */
const MAX_COMPONENT = 24;

let scratch = Buffer.allocUnsafe(16 * 1024);
const digits = new Uint8Array(10);

function writeInt(buf: Buffer, o: number, n: number): number {
  if (n < 0) {
    buf[o++] = MINUS;
    n = -n;
  }
  let len = 0;
  do {
    digits[len++] = ZERO + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  while (len > 0) buf[o++] = digits[--len]!;
  return o;
}

/** Writes one finite, non-zero-checked component at `o`; returns the new offset. */
function writeComponent(buf: Buffer, o: number, v: number): number {
  if (v === 0) {
    buf[o] = ZERO;
    return o + 1;
  }
  const a = v < 0 ? -v : v;
  // Nine-digit integer mantissa d and exponent x with a ≈ d × 10^x. log10 may be off by one near a
  // power of ten; the range check below corrects it.
  let e =
    a < 1 && a >= 1e-6
      ? // Embedding components mostly live here: a comparison ladder is cheaper than log10.
        a >= 0.1
        ? -1
        : a >= 0.01
          ? -2
          : a >= 0.001
            ? -3
            : a >= 1e-4
              ? -4
              : a >= 1e-5
                ? -5
                : -6
      : Math.floor(Math.log10(a));
  // float32 spans 1e-45..3e38; anything beyond this table (a float64 outlier) takes the slow path.
  if (e > 50 || e < -50) return o + buf.write(Number(v.toPrecision(9)).toString(), o, "latin1");
  let d = Math.round(a * POW10[68 - e]!);
  if (d >= 1e9) {
    e++;
    d = Math.round(a * POW10[68 - e]!);
  } else if (d < 1e8) {
    e--;
    d = Math.round(a * POW10[68 - e]!);
  }
  let x = e - 8;
  while (d % 10 === 0) {
    d = (d / 10) | 0;
    x++;
  }
  if (v < 0) buf[o++] = MINUS;
  // Digits of d, most significant first, into `digits`.
  let len = 0;
  // d < 1e9 < 2^31: plain int32 arithmetic.
  for (let n = d | 0; n > 0; n = (n / 10) | 0) digits[len++] = ZERO + (n % 10);
  const point = len + x;
  if (x >= 0 || point < -12) {
    while (len > 0) buf[o++] = digits[--len]!;
    if (x !== 0) {
      buf[o++] = LOWER_E;
      o = writeInt(buf, o, x);
    }
    return o;
  }
  if (point > 0) {
    for (let i = 0; i < point; i++) buf[o++] = digits[--len]!;
    buf[o++] = DOT;
    while (len > 0) buf[o++] = digits[--len]!;
    return o;
  }
  buf[o++] = ZERO;
  buf[o++] = DOT;
  for (let i = 0; i < -point; i++) buf[o++] = ZERO;
  while (len > 0) buf[o++] = digits[--len]!;
  return o;
}

export function formatVector(vector: ArrayLike<number>): string {
  const need = 2 + vector.length * (MAX_COMPONENT + 1);
  if (scratch.length < need) scratch = Buffer.allocUnsafe(Math.max(need, scratch.length * 2));
  const buf = scratch;
  let o = 0;
  buf[o++] = 0x5b;
  for (let i = 0; i < vector.length; i++) {
    const v = vector[i]!;
    if (!Number.isFinite(v)) throw new RangeError(`vector component ${i} is not a finite number (${v})`);
    if (i > 0) buf[o++] = 0x2c;
    o = writeComponent(buf, o, v);
  }
  buf[o++] = 0x5d;
  return buf.toString("latin1", 0, o);
}

/** pgvector text output ("[1,2,3]") or a Postgres array ("{1,2,3}") back to numbers. */
export function parseVector(text: string): number[] {
  const inner = text.trim().slice(1, -1).trim();
  return inner === "" ? [] : inner.split(",").map(Number);
}

/**
 * The vectors of one write call. Each transport sends them its own way (src/lib/db/postgres.ts):
 * the direct connection as one binary float4 array parameter plus each vector's length, PGlite and
 * supabase-js as pgvector text literals (`toJSON`, for PostgREST's JSON body). The SQL API checks
 * lengths, dimensions and finiteness either way.
 */
export class VectorList {
  constructor(readonly vectors: readonly ArrayLike<number>[]) {}

  /** Text literals, for the transports that carry text (PGlite parameters, PostgREST JSON). */
  toText(): string[] {
    return this.vectors.map(formatVector);
  }

  toJSON(): string[] {
    return this.toText();
  }
}

/** OID of float4 (real), the element type written into a binary real[] value. */
const FLOAT4_OID = 700;

/**
 * All vectors of a batch as one one-dimensional real[] in PostgreSQL's binary array format (what
 * array_recv reads): ndim 1, no nulls, element type float4, length, lower bound 1, then per element
 * a 4-byte length and the big-endian float. Sent as a binary parameter, the server copies floats
 * instead of parsing decimal text, which was most of its CPU per row at 1,536 dimensions
 * (bench/README.md). Components are float32 already (the provider returns float32), so nothing is
 * rounded; a non-finite component is refused here, as formatVector does.
 */
export function encodeFloat4Array(vectors: readonly ArrayLike<number>[]): {
  data: Buffer;
  lengths: number[];
} {
  const lengths = vectors.map((v) => v.length);
  let total = 0;
  for (const n of lengths) total += n;
  // An empty array is zero-dimensional in PostgreSQL (array_recv refuses a dimension of length 0).
  const data = Buffer.allocUnsafe(total === 0 ? 12 : 20 + total * 8);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  view.setInt32(0, total === 0 ? 0 : 1);
  view.setInt32(4, 0);
  view.setInt32(8, FLOAT4_OID);
  if (total === 0) return { data, lengths };
  view.setInt32(12, total);
  view.setInt32(16, 1);
  let o = 20;
  for (const vector of vectors) {
    for (let i = 0; i < vector.length; i++) {
      const x = vector[i]!;
      if (!Number.isFinite(x)) throw new RangeError(`vector component ${i} is not a finite number (${x})`);
      view.setInt32(o, 4);
      view.setFloat32(o + 4, x);
      o += 8;
    }
  }
  return { data, lengths };
}
