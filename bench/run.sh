#!/usr/bin/env bash
# Benchmarks rutella against socat and raw TCP on loopback, and writes the
# table into docs/PERFORMANCE.md; it ends with the time to the first peer
# for nodes given no address (a local DHT on 127.0.0.1, and the LAN in
# network namespaces when run as root) and, as root, every download path
# (direct, mapped, pushed, punched, relayed) in a network lab of
# namespaces whose addresses exist only inside it (one skip line
# otherwise). Pass --smoke for a quick check with tiny sizes, --discovery
# for the time to the first peer alone, --lab for the lab's paths alone;
# other flags go to rutella-bench (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# Never the public DHT: runs start with it off, and accept only loopback
# bootstrap nodes when a test turns it on.
export RUTELLA_NO_DHT=1 RUTELLA_TEST_NO_PUBLIC=1
if ! command -v socat >/dev/null 2>&1; then
  echo "installing socat (the raw TCP baseline)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq socat; else sudo apt-get update -qq && sudo apt-get install -y -qq socat; fi
fi
cargo build --release --locked -p rutella -p rutella-bench
write=(--write-doc docs/PERFORMANCE.md)
for a in "$@"; do [ "$a" = --smoke ] && write=(); done
exec target/release/rutella-bench --rutella target/release/rutella "${write[@]}" "$@"
