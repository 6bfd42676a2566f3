#!/usr/bin/env bash
# Agent benchmark: vaultlet-agent vs `bao agent`, same OpenBao, same 3 templates.
#   scripts/bench-agent.sh [--idle SECONDS] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
cargo build -q --release -p vaultlet-agent
exec python3 scripts/bench-agent.py --agent target/release/vaultlet-agent --bao "$VAULTLET_BAO" "$@"
