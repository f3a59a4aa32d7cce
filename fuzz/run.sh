#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer on the stable toolchain and runs
# each for a bounded time; fails when a target finds a crash.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Coverage instrumentation uses only stable rustc flags (the same ones
# cargo-fuzz passes, without its nightly-only sanitizer flags), so neither
# nightly nor cargo-fuzz is needed: only a C++ compiler for libFuzzer.
# New inputs are added to fuzz/corpus/TARGET; a crash is written to
# fuzz/artifacts/TARGET/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-30}"
shift || true
all=(udp_message udp_fields overlay wire_hello wire_request wire_response tree_decode classic_request lan_datagram dial_back relay_wire gnutella_handshake gnutella_descriptor gnutella_qrp gnutella_stream gnutella_http_request gnutella_http_response gnutella_giv remote_sse http_detect gnutella_browse gnutella_hostcache)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps build scripts and proc macros uninstrumented.
cargo build --locked --release --target "$triple" \
  $(printf -- '--bin %s ' "${targets[@]}")
bin="$CARGO_TARGET_DIR/$triple/release"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  echo "== fuzz $t for ${secs}s"
  if ! "$bin/$t" "corpus/$t" "${dict[@]}" \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"artifacts/$t/log"; then
    tail -40 "artifacts/$t/log"
    failed+=("$t")
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "artifacts/$t/log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
