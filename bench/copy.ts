import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";

/**
 * COPY ... FROM STDIN (FORMAT binary) for the raw-database ceiling, through pg-copy-streams (the
 * maintained COPY sub-protocol for node-postgres). Only the binary tuple encoding is ours: it is
 * small and specific to the (id bigint, embedding real[]) rows the ceiling writes.
 */

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const FLOAT4_OID = 700;
/** Pieces of ≤ 1 MB: pg-copy-streams sends each write as CopyData messages, and a socket write of 1 MB stays cheap. */
const PIECE_BYTES = 1 << 20;

/** Runs `sql` (a `COPY ... FROM STDIN`) with `data` as the whole stream; resolves to the rows copied. */
export async function copyIn(client: pg.PoolClient | pg.Client, sql: string, data: Buffer): Promise<number> {
  const stream = client.query(copyFrom(sql));
  await pipeline(function* () {
    for (let i = 0; i < data.length; i += PIECE_BYTES) yield data.subarray(i, i + PIECE_BYTES);
  }, stream);
  return stream.rowCount;
}

/**
 * One binary COPY stream of (id bigint, embedding real[]) rows. Postgres' binary format: signature,
 * flags, header extension, then per tuple a field count and length-prefixed big-endian fields; a real[]
 * is ndim, has-null flag, element type, (size, lower bound) per dimension, then length-prefixed float4s.
 */
export function encodeIdVectorRows(ids: readonly number[], vectorOf: (i: number) => Float32Array): Buffer {
  const dims = ids.length > 0 ? vectorOf(0).length : 0;
  const arrayBytes = 20 + dims * 8;
  const tupleBytes = 2 + 4 + 8 + 4 + arrayBytes;
  const out = Buffer.allocUnsafe(SIGNATURE.length + 8 + ids.length * tupleBytes + 2);
  let o = SIGNATURE.copy(out, 0);
  o = out.writeInt32BE(0, o);
  o = out.writeInt32BE(0, o);
  for (let r = 0; r < ids.length; r++) {
    const v = vectorOf(r);
    if (v.length !== dims) throw new Error(`row ${ids[r]}: ${v.length} floats, expected ${dims}`);
    o = out.writeInt16BE(2, o);
    o = out.writeInt32BE(8, o);
    o = out.writeBigInt64BE(BigInt(ids[r]!), o);
    o = out.writeInt32BE(arrayBytes, o);
    o = out.writeInt32BE(1, o);
    o = out.writeInt32BE(0, o);
    o = out.writeInt32BE(FLOAT4_OID, o);
    o = out.writeInt32BE(v.length, o);
    o = out.writeInt32BE(1, o);
    for (let i = 0; i < v.length; i++) {
      o = out.writeInt32BE(4, o);
      o = out.writeFloatBE(v[i]!, o);
    }
  }
  out.writeInt16BE(-1, o);
  return out;
}
