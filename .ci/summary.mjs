// Prints the test run's summary from vitest's JSON report as the last line of CI output:
// files and tests, passed and failed. Exits 1 when the report is missing (the run crashed early).
import { readFileSync } from "node:fs";

const file = process.argv[2] ?? "test-output/vitest.json";
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch {
  console.log(`test summary: no report at ${file} (the test run did not finish)`);
  process.exit(1);
}
const files = report.testResults ?? [];
const failedFiles = files.filter((f) => f.status !== "passed").length;
console.log(
  `test summary: files ${files.length} (passed ${files.length - failedFiles}, failed ${failedFiles}); ` +
    `tests ${report.numTotalTests} (passed ${report.numPassedTests}, failed ${report.numFailedTests}, ` +
    `skipped ${report.numPendingTests + (report.numTodoTests ?? 0)})`,
);
