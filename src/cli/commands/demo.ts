import type { Command } from "commander";
import { DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS } from "../../lib/chunking/chunker.js";
import { InputError } from "../../lib/errors.js";
import { LOCAL_MODEL } from "../../lib/providers/local.js";
import { positiveInt } from "../args.js";
import { nearestNeighbours, setUpDemoTable } from "../demo-table.js";
import { nearestChunks, setUpRecordings } from "../demo-transcripts.js";
import type { Cli } from "../io.js";
import { runWithSignals } from "../run-target.js";

const QUERY = "how do I keep long backfills from timing out in edge functions";
const CHUNK_QUERY = "which meeting discussed retry-after headers on a 429 response";

/** `demo`: the whole job on the embedded default, offline. */
export function registerDemo(program: Command, cli: Cli): void {
  program
    .command("demo")
    .description(
      "the whole job on the embedded default: create a documents table, register it, backfill it offline, query it",
    )
    .option("--rows <n>", "rows to create", positiveInt("--rows", 1_000_000), 2400)
    .option("--dimensions <n>", "vector size", positiveInt("--dimensions", 16000), 384)
    .option(
      "--recordings <n>",
      "long transcripts to create (embedded as chunks)",
      positiveInt("--recordings", 1000),
      6,
    )
    .option("--json", "machine-readable output")
    .action(async (o) => {
      try {
        await cli.withContext(async (ctx) => {
          if (!ctx.admin) {
            throw new InputError(
              "the demo creates its own table, so it needs a direct database (DATABASE_URL or the embedded default), not SUPABASE_URL",
            );
          }
          const table = await setUpDemoTable(ctx.admin, { rows: o.rows, dimensions: o.dimensions });
          await ctx.store.registerTarget({
            name: "demo_documents",
            table: "public.documents",
            idColumn: "id",
            contentColumns: ["title", "body"],
            embeddingColumn: "embedding",
            provider: "local",
            model: LOCAL_MODEL,
            dimensions: o.dimensions,
          });
          const summary = await runWithSignals(cli.io, ctx, {
            target: "demo_documents",
            batchSize: 100,
            parallelism: 2,
            reembed: false,
            json: Boolean(o.json),
          });
          // The chunked workload: long transcripts, each embedded as many chunks.
          const recordings = await setUpRecordings(ctx.admin, { count: o.recordings, turns: 150 });
          await ctx.store.registerTarget({
            name: "demo_recordings",
            table: "public.recordings",
            idColumn: "id",
            contentColumns: ["transcript"],
            embeddingColumn: "embedding",
            provider: "local",
            model: LOCAL_MODEL,
            dimensions: o.dimensions,
            chunkTable: "public.recording_chunks",
            chunkTokens: DEFAULT_CHUNK_TOKENS,
            chunkOverlap: DEFAULT_CHUNK_OVERLAP,
          });
          const chunked = await runWithSignals(cli.io, ctx, {
            target: "demo_recordings",
            batchSize: 100,
            parallelism: 2,
            reembed: false,
            json: Boolean(o.json),
          });
          const [status] = await ctx.store.status("demo_documents");
          const [chunkStatus] = await ctx.store.status("demo_recordings");
          const hits = await nearestChunks(ctx.admin, CHUNK_QUERY, {
            dimensions: o.dimensions,
            vectorType: table.vectorType,
          });
          const neighbours = await nearestNeighbours(ctx.admin, QUERY, {
            dimensions: o.dimensions,
            vectorType: table.vectorType,
          });
          const result = {
            database: ctx.describe,
            rowsCreated: table.inserted,
            embedded: summary.job.itemsProcessed,
            tokens: summary.job.tokens,
            seconds: Number((summary.elapsedMs / 1000).toFixed(2)),
            rowsPerSecond: Math.round(summary.job.itemsProcessed / Math.max(summary.elapsedMs / 1000, 0.001)),
            coverage: status?.coverage ?? 0,
            total: status?.total ?? 0,
            query: QUERY,
            neighbours,
            chunked: {
              recordingsCreated: recordings.inserted,
              documents: chunkStatus?.total ?? 0,
              chunksStored: chunkStatus?.chunks?.stored ?? 0,
              chunksEmbedded: chunked.job.chunksEmbedded ?? 0,
              seconds: Number((chunked.elapsedMs / 1000).toFixed(2)),
              query: CHUNK_QUERY,
              hits,
            },
          };
          cli.print(o.json, result, () =>
            [
              `database   ${result.database}`,
              `table      public.documents (${result.total} rows${result.rowsCreated ? `, ${result.rowsCreated} created now` : ", already there"})`,
              `embedded   ${result.embedded} rows, ${result.tokens} tokens in ${result.seconds} s (${result.rowsPerSecond} rows/s)`,
              `coverage   ${result.coverage}%`,
              "",
              `nearest neighbours of "${QUERY}" (local lexical model, cosine distance):`,
              ...neighbours.map((n) => `  ${n.distance.toFixed(3)}  #${n.id} ${n.title}`),
              "",
              `chunked    public.recordings (${result.chunked.documents} transcripts) -> public.recording_chunks: ${result.chunked.chunksStored} chunks stored, ${result.chunked.chunksEmbedded} embedded now in ${result.chunked.seconds} s`,
              `nearest chunks of "${CHUNK_QUERY}":`,
              ...hits.map((h) => `  ${h.distance.toFixed(3)}  ${h.title}, chunk ${h.chunk}: ${h.excerpt}...`),
              "",
              result.embedded === 0
                ? "nothing to embed: every row is current (unchanged content is never embedded twice)"
                : "run it again: it embeds nothing, because nothing changed",
            ].join("\n"),
          );
        });
      } catch (err) {
        cli.fail(err);
      }
    });
}
