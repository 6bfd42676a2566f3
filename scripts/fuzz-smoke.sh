#!/usr/bin/env bash
# A few seconds of every cargo-fuzz target on its committed seed corpus (docs/reliability.md).
# CI (.ci/run) calls it. A crash fails it. A missing fuzz toolchain (cargo-fuzz, a C++
# compiler for libFuzzer) does not: it is reported loudly and skipped.
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]    (default 5)
set -uo pipefail
cd "$(dirname "$0")/../fuzz" || exit 1
secs="${1:-5}"
targets=(vault_response render agent_config admission_review annotations)

loud() {
  printf '\n%s\n!!! fuzz smoke: %s\n%s\n\n' "$(printf '!%.0s' {1..72})" "$*" "$(printf '!%.0s' {1..72})" >&2
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  loud "SKIPPED, cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  exit 0
fi
if ! command -v c++ >/dev/null 2>&1; then
  loud "SKIPPED, no C++ compiler to build libFuzzer (Debian package g++)"
  exit 0
fi
# cargo-fuzz passes -Z flags; a stable toolchain accepts them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
# Outside the work tree, so that a CI run on a fresh clone rebuilds only what changed.
export CARGO_TARGET_DIR="${VAULTLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vaultlet}/target-fuzz"
flags=(--sanitizer none --debug-assertions)
log="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$log" "$work"' EXIT
if ! cargo fuzz build "${flags[@]}" >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  # A compile error in our code is a failure; anything else is the toolchain.
  if grep -q '^error\[E[0-9]' "$log"; then
    loud "the fuzz targets do not compile (output above)"
    exit 1
  fi
  loud "SKIPPED, the fuzz targets did not build with this toolchain (output above)"
  exit 0
fi
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  # New inputs go to the temp dir; the committed corpus stays as it is.
  if cargo fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$secs" >"$log" 2>&1; then
    printf 'fuzz smoke: %-16s ok (%s)\n' "$t" "$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1)"
  else
    tail -n 40 "$log" >&2
    loud "target $t FAILED (crash input under fuzz/artifacts/$t)"
    failed=1
  fi
done
exit "$failed"
