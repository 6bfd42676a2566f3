#!/usr/bin/env bash
# The README demo: OpenBao on loopback, a Pod mutated by the injector, the real agent rendering a
# secret file for a stand-in app, a secret rotation, re-render and SIGHUP. Needs cargo and python3;
# installs OpenBao into .venv on first use. Everything it starts is stopped on exit or Ctrl-C.
#   scripts/demo.sh [--pod FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

# shellcheck source=scripts/tools.sh
source scripts/tools.sh

say "building vaultlet-injector, vaultlet-agent and the demo runner (a first build takes a few minutes; cargo shows its progress)"
# Not -q: on a first build the user sees crates compiling instead of a silent wait.
cargo build --locked -p vaultlet-injector -p vaultlet-agent -p vaultlet-e2e

work="$(mktemp -d "${TMPDIR:-/tmp}/vaultlet-demo.XXXXXX")"
demo_pid=""

cleanup() {
  local rc=$?
  trap - INT TERM EXIT
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    # The demo runs in its own process group: TERM lets it stop the Pod and OpenBao itself.
    kill -TERM -- "-$demo_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$demo_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Job control gives the background job its own process group (leader: $demo_pid).
set -m
"${CARGO_TARGET_DIR:-target}/debug/vaultlet-demo" --work-dir "$work" "$@" &
demo_pid=$!
set +m
wait "$demo_pid"
