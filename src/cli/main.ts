#!/usr/bin/env node
import { processIO } from "./io.js";
import { buildProgram } from "./program.js";

/** The `embeddings` binary: the program, on this process's arguments, streams and exit. */
await buildProgram(processIO()).parseAsync(process.argv);
