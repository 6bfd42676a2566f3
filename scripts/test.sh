#!/usr/bin/env bash
# Builds everything and runs every test: unit, in-process, integration against real OpenBao and
# PostgreSQL, admission and Kubernetes auth on a real local control plane (scripts/cluster.sh),
# manifest validation, Helm lint, and the README demo. Installs and builds what it needs itself
# (the Kubernetes binaries once, into ~/.cache/vaultlet).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*"; }

step "tools (OpenBao, kubernetes-validate, helm-sdkpy, PostgreSQL; Kubernetes from Go modules)"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
bao version
scripts/cluster.sh build

step "build"
cargo build --workspace --all-targets --locked

step "local Kubernetes (control plane + node, images built here) + helm install of the chart"
# The watchdog takes the cluster down if this script dies; the trap does on a normal exit.
trap 'scripts/cluster.sh down' EXIT
VAULTLET_INJECTOR="$PWD/target/debug/vaultlet-injector" scripts/cluster.sh install --watch $$

step "cargo test"
validate_dir="$PWD/target/validate"
rm -rf "$validate_dir" && mkdir -p "$validate_dir"
VAULTLET_VALIDATE_DIR="$validate_dir" cargo test --workspace --locked -- --test-threads=2

step "kubernetes-validate: every mutated Pod the tests produced"
scripts/validate-manifests.sh "$validate_dir"

step "samples: validate, and validate their preview"
VAULTLET_INJECTOR="$PWD/target/debug/vaultlet-injector" scripts/validate-samples.sh

step "helm lint"
"$VAULTLET_VENV/bin/python" scripts/helm-lint.py

step "README demo"
scripts/demo.sh

echo
echo "all checks passed"
