#!/usr/bin/env bash
# Validates every YAML manifest in DIR against the Kubernetes 1.33 schema (strict: unknown
# fields are errors). Fails on any error.
#   scripts/validate-manifests.sh DIR
# The injector's unit tests write each mutated Pod there when VAULTLET_VALIDATE_DIR is set:
#   VAULTLET_VALIDATE_DIR=/tmp/mutated cargo test -p vaultlet-injector && scripts/validate-manifests.sh /tmp/mutated
set -euo pipefail

dir="${1:?usage: $0 DIR}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
validator="${VAULTLET_VENV:-$repo/.venv}/bin/kubernetes-validate"
if [ ! -x "$validator" ]; then
  validator="$(command -v kubernetes-validate || true)"
fi
if [ -z "$validator" ]; then
  echo "kubernetes-validate not found; run: source scripts/tools.sh" >&2
  exit 2
fi

mapfile -t files < <(find "$dir" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "no manifests in $dir" >&2
  exit 1
fi

# kubernetes-validate exits non-zero on any invalid document; --quiet prints only failures.
if "$validator" --strict --kubernetes-version 1.33.0 --quiet "${files[@]}"; then
  echo "ok: ${#files[@]} manifests valid for Kubernetes 1.33 (strict)"
else
  echo "FAILED: see the errors above" >&2
  exit 1
fi
