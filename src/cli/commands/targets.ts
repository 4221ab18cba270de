import { type Command, Option } from "commander";
import {
  DEFAULT_CHUNK_OVERLAP,
  DEFAULT_CHUNK_TOKENS,
  validateChunkOptions,
} from "../../lib/chunking/chunker.js";
import { InputError } from "../../lib/errors.js";
import { defaultModel, PROVIDERS } from "../../lib/providers/index.js";
import { LOCAL_MODEL } from "../../lib/providers/local.js";
import type { PriorityInput, PriorityOrder } from "../../lib/types.js";
import { columnList, nonNegativeInt, positiveInt, priorityArg } from "../args.js";
import type { Cli } from "../io.js";

/** `--priority col [asc|desc]` or `--priority-sql expr`; `--priority-order` may repeat, not contradict, the first. */
function prioritySpec(
  words: string[] | undefined,
  sql: string | undefined,
  order: PriorityOrder | undefined,
): PriorityInput | undefined {
  if (sql) return { expression: sql, order: order ?? "desc" };
  if (!words) return undefined;
  const p = priorityArg(words);
  if (order && p.order && order !== p.order)
    throw new InputError(`--priority says ${p.order} but --priority-order says ${order}`);
  return { column: p.column, order: order ?? p.order ?? "desc" };
}

/** `targets add | list | remove`: what to embed. */
export function registerTargets(program: Command, cli: Cli): void {
  const targets = program.command("targets").description("register, list and remove targets");

  targets
    .command("add")
    .description("register a table whose rows need embeddings (re-running updates it)")
    .argument("<name>", "target name: lowercase letters, digits and _")
    .requiredOption("--table <schema.table>", "the source table, e.g. public.documents")
    .requiredOption("--id <column>", "its primary key column")
    .option("--content <columns>", "comma-separated text columns to embed, e.g. title,body", columnList)
    .option("--content-sql <expression>", "or one SQL expression over the row that yields the text")
    .option(
      "--embedding <column>",
      "the vector(N) / halfvec(N) / real[] column to fill (with --chunks: the chunk table's; default embedding)",
    )
    .option(
      "--chunks <schema.table>",
      "embed each row as chunks in this table (document_id, chunk_index, content, embedding); created if missing",
    )
    .option(
      "--chunk-tokens <n>",
      `largest chunk, in tokens (with --chunks; default ${DEFAULT_CHUNK_TOKENS})`,
      positiveInt("--chunk-tokens", 8191),
    )
    .option(
      "--chunk-overlap <n>",
      `tokens of the previous chunk repeated at the start of the next (with --chunks; default ${DEFAULT_CHUNK_OVERLAP})`,
      nonNegativeInt("--chunk-overlap", 4095),
    )
    .option(
      "--priority <column...>",
      "claim order: a number, date or timestamp column, optionally asc or desc (default desc: newest first)",
    )
    .option(
      "--priority-sql <expression>",
      "or one SQL expression over the row that yields a number or a timestamp (higher first)",
    )
    .addOption(
      new Option("--priority-order <order>", "asc or desc, for --priority or --priority-sql").choices([
        "asc",
        "desc",
      ]),
    )
    .option(
      "--replace",
      "re-register with another definition: clears the old state, and every row is embedded again",
    )
    .addOption(
      new Option("--provider <provider>", "embedding provider").choices([...PROVIDERS]).default("local"),
    )
    .option(
      "--model <model>",
      `model id (default: ${LOCAL_MODEL} for local, text-embedding-3-small for openai)`,
    )
    .option(
      "--dimensions <n>",
      "vector size; read from vector(N) columns, required for real[]",
      positiveInt("--dimensions", 16000),
    )
    .option(
      "--max-attempts <n>",
      "attempts per row before dead_letter",
      positiveInt("--max-attempts", 100),
      3,
    )
    .option("--json", "machine-readable output")
    .action(async (name: string, o) => {
      try {
        if (!o.content && !o.contentSql)
          throw new InputError(
            "give the content to embed: --content col1,col2 or --content-sql <expression>",
          );
        if (o.content && o.contentSql)
          throw new InputError("give either --content or --content-sql, not both");
        if (!o.chunks && (o.chunkTokens !== undefined || o.chunkOverlap !== undefined))
          throw new InputError("--chunk-tokens and --chunk-overlap need --chunks <schema.table>");
        if (!o.chunks && !o.embedding)
          throw new InputError("give the column to fill: --embedding <column> (or --chunks <schema.table>)");
        if (o.priority && o.prioritySql)
          throw new InputError("give either --priority or --priority-sql, not both");
        if (o.priorityOrder && !o.priority && !o.prioritySql)
          throw new InputError("--priority-order needs --priority <column> or --priority-sql <expression>");
        const priority = prioritySpec(o.priority, o.prioritySql, o.priorityOrder);
        const chunking = o.chunks
          ? {
              chunkTokens: o.chunkTokens ?? DEFAULT_CHUNK_TOKENS,
              overlapTokens:
                o.chunkOverlap ??
                Math.min(DEFAULT_CHUNK_OVERLAP, Math.floor((o.chunkTokens ?? DEFAULT_CHUNK_TOKENS) / 8)),
              maxInputTokens: 8191,
            }
          : null;
        const problems = chunking ? validateChunkOptions(chunking) : [];
        if (problems.length > 0)
          throw new InputError(
            problems
              .join("; ")
              .replaceAll("chunkTokens", "--chunk-tokens")
              .replaceAll("overlapTokens", "--chunk-overlap"),
          );
        const target = await cli.withContext((ctx) =>
          ctx.store.registerTarget({
            name,
            table: o.table,
            idColumn: o.id,
            embeddingColumn: o.embedding ?? "embedding",
            provider: o.provider,
            model: o.model ?? defaultModel(o.provider)!,
            contentColumns: o.content,
            contentExpression: o.contentSql,
            dimensions: o.dimensions,
            maxAttempts: o.maxAttempts,
            replace: Boolean(o.replace),
            ...(priority ? { priority } : {}),
            ...(chunking
              ? {
                  chunkTable: o.chunks,
                  chunkTokens: chunking.chunkTokens,
                  chunkOverlap: chunking.overlapTokens,
                }
              : {}),
          }),
        );
        cli.print(o.json, target, () =>
          [
            target.chunks
              ? `registered ${target.name}: ${target.table} in chunks of up to ${target.chunks.tokens} tokens (overlap ${target.chunks.overlap}) -> ${target.chunks.table}.${target.embeddingColumn} (${target.embeddingKind}, ${target.dimensions} dims) with ${target.provider}/${target.model}${target.chunkTableCreated ? " (chunk table created)" : ""}`
              : `registered ${target.name}: ${target.table} -> ${target.embeddingColumn} (${target.embeddingKind}, ${target.dimensions} dims) with ${target.provider}/${target.model}`,
            ...(target.priority
              ? [
                  `order: ${target.priority.expression} ${target.priority.order} (edits of embedded rows go first)`,
                ]
              : []),
            ...(target.notes ?? []).map((n) => `note: ${n}`),
            ...(target.replaced
              ? [
                  `replaced the old definition (${target.changed.join(", ")} changed): cleared the state of ${target.reset} rows; every row is embedded again`,
                ]
              : []),
            `next: embeddings run ${target.name}`,
          ].join("\n"),
        );
      } catch (err) {
        cli.fail(err);
      }
    });

  targets
    .command("list")
    .description("list registered targets")
    .option("--json", "machine-readable output")
    .action(async (o) => {
      try {
        const list = await cli.withContext((ctx) => ctx.store.listTargets());
        cli.print(o.json, list, () =>
          list.length === 0
            ? "no targets registered"
            : list
                .map(
                  (t) =>
                    `${t.name}\t${t.chunks ? `${t.table} -> ${t.chunks.table}.${t.embeddingColumn} (chunks of ${t.chunks.tokens})` : `${t.table}.${t.embeddingColumn}`}\t${t.provider}/${t.model}\t${t.dimensions} dims\tcontent: ${t.contentColumns?.join(",") ?? t.contentExpression}${t.priority ? `\torder: ${t.priority.expression} ${t.priority.order}` : ""}`,
                )
                .join("\n"),
        );
      } catch (err) {
        cli.fail(err);
      }
    });

  targets
    .command("remove")
    .description("unregister a target: drops its triggers and row state; the table and its embeddings stay")
    .argument("<name>")
    .option("--json", "machine-readable output")
    .action(async (name: string, o) => {
      try {
        const r = await cli.withContext((ctx) => ctx.store.removeTarget(name));
        cli.print(o.json, r, () => `removed ${r.removed}`);
      } catch (err) {
        cli.fail(err);
      }
    });
}
