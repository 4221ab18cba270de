import { type FakeOpenAIBehavior, startFakeOpenAI } from "../test/support/fake-openai.js";

/**
 * Child-process entry: the fake OpenAI-compatible server (test/support/fake-openai.ts) in a process of
 * its own, so its CPU and memory are not counted as the worker's. Driven over IPC by bench/run.ts.
 */

export type FakeCommand =
  | { id: number; cmd: "configure"; behavior: Partial<FakeOpenAIBehavior> }
  | { id: number; cmd: "stats" }
  | { id: number; cmd: "close" };

const NO_LIMITS: Partial<FakeOpenAIBehavior> = { requestsPerMinute: null, tokensPerMinute: null };

const fake = await startFakeOpenAI();
let cpuAtConfigure = process.cpuUsage();
process.send?.({ ready: true, url: fake.url });

process.on("message", async (message: FakeCommand) => {
  switch (message.cmd) {
    case "configure":
      // Clearing the limits first drops the old buckets, so every scenario starts with full ones.
      fake.setBehavior(NO_LIMITS);
      fake.setBehavior(message.behavior);
      fake.resetStats();
      cpuAtConfigure = process.cpuUsage();
      process.send?.({ id: message.id, ok: true });
      break;
    case "stats":
      {
        const cpu = process.cpuUsage(cpuAtConfigure);
        process.send?.({ id: message.id, stats: fake.stats, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
      }
      break;
    case "close":
      await fake.close();
      process.send?.({ id: message.id, ok: true }, () => process.exit(0));
      break;
  }
});
process.on("disconnect", () => process.exit(0));
