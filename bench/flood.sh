#!/usr/bin/env bash
# Floods a `rutella serve` process (joined to two others) with datagrams
# from one loopback address while searches from another address run, and
# prints how many were answered next to the same searches without the
# flood. Loopback only (127.0.60.0/24). Flags go to rutella-flood (see
# --help), e.g. --secs 20 --rate 100000 --kind mixed --write-doc FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
# Never the public DHT: runs start with it off, and accept only loopback
# bootstrap nodes when a test turns it on.
export RUTELLA_NO_DHT=1 RUTELLA_TEST_NO_PUBLIC=1
cargo build --release --locked -p rutella -p rutella-bench
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/rutella-flood" --rutella "$target_dir/release/rutella" "$@"
