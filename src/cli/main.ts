#!/usr/bin/env node
import { limitHeapGrowth } from "./heap.js";
import { processIO } from "./io.js";
import { buildProgram } from "./program.js";

/** The `embeddings` binary: the program, on this process's arguments, streams and exit. */
const io = processIO();
limitHeapGrowth([...process.execArgv, io.env.NODE_OPTIONS ?? ""]);
await buildProgram(io).parseAsync(process.argv);
