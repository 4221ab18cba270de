import type pg from "pg";

/**
 * COPY ... FROM STDIN (FORMAT binary) over node-postgres without pg-copy-streams (not installed):
 * a minimal "submittable" (the hook pg's Client offers for custom protocol flows) that answers the
 * server's CopyInResponse with ready-made CopyData chunks. Used only by the raw-database ceiling.
 */

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const FLOAT4_OID = 700;

class CopyIn {
  private error: Error | undefined;
  private rowCount = 0;

  constructor(
    readonly text: string,
    private readonly chunks: readonly Buffer[],
    private readonly settle: (err: Error | undefined, rows: number) => void,
  ) {}

  submit(connection: { query(text: string): void }): void {
    connection.query(this.text);
  }

  handleCopyInResponse(connection: { sendCopyFromChunk(b: Buffer): void; endCopyFrom(): void }): void {
    for (const chunk of this.chunks) connection.sendCopyFromChunk(chunk);
    connection.endCopyFrom();
  }

  handleCommandComplete(msg: { text: string }): void {
    this.rowCount = Number(msg.text.split(" ").pop() ?? 0);
  }

  handleError(err: Error): void {
    this.error ??= err;
  }

  handleReadyForQuery(): void {
    this.settle(this.error, this.rowCount);
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/** Runs `COPY <table> FROM STDIN (FORMAT binary)` with `data` as the whole stream; resolves to rows copied. */
export function copyIn(client: pg.PoolClient | pg.Client, sql: string, data: Buffer): Promise<number> {
  // CopyData messages of ≤ 1 MB keep the socket writes reasonable.
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += 1 << 20) chunks.push(data.subarray(i, i + (1 << 20)));
  return new Promise((resolve, reject) => {
    const q = new CopyIn(sql, chunks, (err, rows) => (err ? reject(err) : resolve(rows)));
    (client as unknown as { query(q: unknown): void }).query(q);
  });
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
