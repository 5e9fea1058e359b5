#!/usr/bin/env bash
# Runs the whole suite and ends with one plain "N passed, N failed, N skipped" line that CI reads.
set -uo pipefail
cd "$(dirname "$0")/.."
# type errors, lint (floating promises above all) and the import rules (no cycle, layers import
# downwards: .dependency-cruiser.cjs) fail the run like a failing test
npx tsc -p tsconfig.json --noEmit || exit 1
npx eslint . || exit 1
npx depcruise src --output-type "plugin:$PWD/scripts/import-rules-reporter.mjs" || exit 1

results=.vitest-results.json
rm -f "$results"
npx vitest run --reporter=default --reporter=json --outputFile="$results" "$@"
status=$?
if [ -f "$results" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
    const skipped = r.numPendingTests + r.numTodoTests
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
    if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1) }
  ' "$results" || status=1
fi
exit $status
