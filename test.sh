#!/usr/bin/env bash
# Runs every test of the workspace. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")"
# Never the public DHT: runs start with it off, and accept only loopback
# bootstrap nodes when a test turns it on.
export RUTELLA_NO_DHT=1 RUTELLA_TEST_NO_PUBLIC=1
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust from https://rustup.rs, then run ./test.sh again" >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "installing python3 (the interoperability tests run a classic peer written in Python)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3; else sudo apt-get update -qq && sudo apt-get install -y -qq python3; fi
fi
# The network lab tests build routers in network namespaces: as root they
# need iproute2, nftables, conntrack and miniupnpd/miniupnpc (elsewhere they
# print one skip line each).
if [ "$(id -u)" = 0 ]; then
  missing=""
  for tool in ip:iproute2 nft:nftables conntrack:conntrack miniupnpd:miniupnpd upnpc:miniupnpc; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool##*:}"
  done
  if [ -n "$missing" ]; then
    echo "installing the network lab's tools:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
fi
# The web interface test drives Debian's headless Chromium (elsewhere it
# prints one skip line).
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (the web interface test drives it headless)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo test --workspace --locked --doc --quiet
cargo nextest run --workspace --locked --no-fail-fast "$@"
