#!/usr/bin/env bash
# Injector benchmarks: in-process mutation cost (divan) and a loopback load test of /mutate
# over TLS + HTTP/2 against a do-nothing TLS baseline measured in the same run.
#   scripts/bench-injector.sh [loadgen options]   e.g. --duration 20 --concurrency 128
# Results go to stdout; copy them into docs/benchmarks.md ("## Injector").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== build (release)" >&2
cargo build --release -p vaultlet-injector --bin vaultlet-injector --example loadgen >&2

echo "== in-process mutation cost (divan)" >&2
cargo bench -p vaultlet-injector --bench mutate

echo "== loopback load test: baseline vs injector (TLS, HTTP/2)" >&2
target/release/examples/loadgen run --injector target/release/vaultlet-injector "$@"
