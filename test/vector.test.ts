import { describe, expect, it } from "vitest";
import { formatVector, parseVector } from "../src/lib/db/vector.js";

/** Vector text literals must round-trip every float32 exactly: what the provider returned is what is stored. */

function randomFloat32(seed: number): number {
  // Random bit patterns cover every exponent, subnormals included; NaN and Infinity are skipped.
  const buf = new DataView(new ArrayBuffer(4));
  buf.setUint32(0, seed >>> 0);
  return buf.getFloat32(0);
}

describe("formatVector", () => {
  it("round-trips 200,000 random float32 values bit for bit", () => {
    let x = 0x9e3779b9;
    const values: number[] = [];
    while (values.length < 200_000) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const f = randomFloat32(x);
      if (Number.isFinite(f)) values.push(f);
    }
    const parsed = parseVector(formatVector(Float32Array.from(values)));
    expect(parsed).toHaveLength(values.length);
    const mismatches = values.filter(
      (v, i) => Math.fround(parsed[i]!) !== v && !(v === 0 && parsed[i] === 0),
    );
    expect(mismatches).toEqual([]);
  });

  it("round-trips typical unit-vector components, powers of ten and their neighbours", () => {
    const edge = [
      0, -0, 1, -1, 0.1, 0.01, 1e-6, 9.99999e-7, 1e-45, 3.4028234663852886e38, 123456789, 0.30000001192092896,
    ];
    const values = Float32Array.from([...edge, ...Array.from({ length: 2000 }, (_, i) => Math.sin(i) / 20)]);
    const parsed = parseVector(formatVector(values));
    for (const [i, v] of values.entries()) expect(Math.fround(parsed[i]!)).toBe(v === 0 ? 0 : v);
  });

  it("refuses NaN and Infinity, naming the component", () => {
    expect(() => formatVector([0.1, Number.NaN])).toThrow(/component 1/);
    expect(() => formatVector([Number.POSITIVE_INFINITY])).toThrow(/component 0/);
  });
});
