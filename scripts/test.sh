#!/usr/bin/env bash
# Builds everything and runs every test: unit, in-process, integration against real OpenBao and
# PostgreSQL, manifest validation, Helm lint, and the README demo. Installs what it needs itself.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*"; }

step "tools (OpenBao, kubernetes-validate, helm-sdkpy, PostgreSQL)"
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
bao version

step "build"
cargo build --workspace --all-targets --locked

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
