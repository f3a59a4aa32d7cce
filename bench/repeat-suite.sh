#!/usr/bin/env bash
# Runs the whole test suite N times in a row (default 20) and prints how
# many runs passed; stops at the first failing run and shows its failures.
# Used to check that no test depends on timing: run it while another build
# keeps both cores busy (for example a release build of a second checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
cargo nextest run --workspace --locked --no-run
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if ! cargo nextest run --workspace --locked --no-fail-fast >"$log" 2>&1; then
    grep -E "^\s+(FAIL|TIMEOUT|SIGSEGV|SIGABRT)" "$log" || tail -40 "$log"
    echo "run $i of $runs failed; $((i - 1)) passed in a row"
    exit 1
  fi
  summary=$(grep -E "Summary" "$log" | tail -1 | sed 's/^ *//')
  echo "run $i of $runs passed ($(( $(date +%s) - start )) s): $summary"
done
echo "$runs of $runs runs passed in a row"
