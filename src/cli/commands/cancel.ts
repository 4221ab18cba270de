import type { Command } from "commander";
import { InputError } from "../../lib/errors.js";
import { cancelJob } from "../../lib/ops/actions.js";
import { batchApiForTarget } from "../../lib/providers/index.js";
import { UUID } from "../args.js";
import { EXIT } from "../exit.js";
import type { Cli } from "../io.js";

/** `cancel <jobId>`: the job ends cancelled, its leases go back, Inngest is told. */
export function registerCancel(program: Command, cli: Cli): void {
  program
    .command("cancel")
    .description("cancel a backfill job: mark it cancelled, give its leases back, and tell Inngest")
    .argument("<jobId>", "the job id (embeddings status shows them)")
    .option("--json", "machine-readable output")
    .addHelpText(
      "after",
      "\nA job that already completed is left as it is (exit 1); cancelling twice is fine (exit 0); a job id that\ndoes not exist yet is cancelled ahead: a backfill with that id stops as soon as it starts.",
    )
    .action(async (jobId: string, o) => {
      let code: number = EXIT.ok;
      try {
        if (!UUID.test(jobId))
          throw new InputError(`"${jobId}" is not a job id (a UUID); embeddings status lists jobs`);
        // Imported here, as in io.ts: the other verbs do not carry the Inngest SDK.
        const { inngestConfigured, sendCancelled } = await import("../../functions/client.js");
        const r = await cli.withContext((ctx) =>
          cancelJob(ctx.store, jobId, {
            reason: "cancelled by the operator (embeddings cancel)",
            notify: inngestConfigured(ctx.config)
              ? (job) => sendCancelled(cli.io.inngest(ctx.config), job.id, job.eventId)
              : undefined,
            batchApiFor: async (name) => batchApiForTarget(await ctx.store.getTarget(name), ctx.config),
          }),
        );
        if (!r.cancelled) code = EXIT.failed;
        cli.print(o.json, r, () => {
          if (!r.cancelled) return `job ${r.jobId} already ${r.status}: nothing to cancel`;
          const event = r.eventSent
            ? "Inngest was told (embeddings/backfill.cancelled)"
            : `Inngest was not told (${r.eventError ?? "not configured"}); its lanes stop at their next batch anyway`;
          if (!r.known) {
            return `no job ${r.jobId} exists yet: its cancellation is recorded, and a backfill with this id stops as soon as it starts\n${event}`;
          }
          const remote = r.remote
            ? `\ncancelled ${r.remote.cancelled} remote batch${r.remote.cancelled === 1 ? "" : "es"} (${r.remote.released} rows given back)${r.remote.errors.length > 0 ? `; the provider was not told: ${r.remote.errors.join("; ")}` : ""}`
            : "";
          return `cancelled job ${r.jobId} of ${r.target} (was ${r.previousStatus}); released ${r.released} leased rows, parked ${r.parked} queued rows (a later backfill resumes them)${remote}\n${event}`;
        });
      } catch (err) {
        cli.fail(err);
      }
      cli.io.exit(code);
    });
}
