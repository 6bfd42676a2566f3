#!/usr/bin/env bash
# Validates the samples:
#   1. every samples/**/*.yaml with `kubernetes-validate --strict` for Kubernetes 1.33;
#   2. each sample's pod.yaml carries the same labels and annotations as its workload's pod
#      template (deployment.yaml, job.yaml, cronjob.yaml), and the opt-in label;
#   3. every setup.sh parses (bash -n) and is executable;
#   4. when the injector binary exists ($VAULTLET_INJECTOR, else target/debug/vaultlet-injector),
#      each workload and pod.yaml goes through `vaultlet-injector preview -f <file>` (plus the
#      flags in the sample's injector.args), must be injected, and the output is validated too
#      (of samples/from-vault-k8s only the converted expected/ files: the rest is vault-k8s input);
#   5. every setup.sh runs twice against a real OpenBao dev server (and a real PostgreSQL for
#      the database sample), both on loopback, and what it configured is exercised: AppRole
#      login with the written ids, database credentials, a PKI certificate, KV secrets still at
#      version 1 after the second run (idempotence).
# Without the injector binary step 4 is skipped with a message (build it: cargo build -p vaultlet-injector).
# Step 5 needs $VAULTLET_BAO and $VAULTLET_PG_BIN (source scripts/tools.sh) and fails without them.
#   scripts/validate-samples.sh            (after `source scripts/tools.sh`)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION="${KUBE_VERSION:-1.33.0}"
VENV="${VAULTLET_VENV:-$PWD/.venv}"
VALIDATE="$VENV/bin/kubernetes-validate"
PYTHON="$VENV/bin/python"
[ -x "$VALIDATE" ] || VALIDATE="$(command -v kubernetes-validate || true)"
[ -n "$VALIDATE" ] || { echo "kubernetes-validate not found: source scripts/tools.sh" >&2; exit 1; }
[ -x "$PYTHON" ] || PYTHON=python3

INJECTOR="${VAULTLET_INJECTOR:-$PWD/target/debug/vaultlet-injector}"
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

mapfile -t files < <(find samples -name '*.yaml' -type f | sort)
[ "${#files[@]}" -gt 0 ] || { echo "no samples found" >&2; exit 1; }

echo "== kubernetes-validate --strict -k $KUBE_VERSION: ${#files[@]} sample files"
if ! "$VALIDATE" --strict --quiet -k "$KUBE_VERSION" "${files[@]}"; then
  fail "kubernetes-validate rejected a sample (see above)"
fi

echo "== pod.yaml matches its workload's pod template"
if ! "$PYTHON" - "${files[@]}" <<'PY'
import sys
from pathlib import Path

import yaml

TEMPLATE = {
    "Deployment": lambda o: o["spec"]["template"],
    "Job": lambda o: o["spec"]["template"],
    "CronJob": lambda o: o["spec"]["jobTemplate"]["spec"]["template"],
}
bad = 0
dirs = sorted({Path(f).parent for f in sys.argv[1:]})
for d in dirs:
    pod_file = d / "pod.yaml"
    if not pod_file.exists():
        continue
    pod = yaml.safe_load(pod_file.read_text())
    if pod.get("kind") != "Pod":
        print(f"FAIL {pod_file}: kind is {pod.get('kind')}, expected Pod"); bad += 1; continue
    if (pod["metadata"].get("labels") or {}).get("vaultlet.io/inject") != "true":
        print(f"FAIL {pod_file}: lacks the opt-in label vaultlet.io/inject: \"true\""); bad += 1
    for f in sorted(d.glob("*.yaml")):
        obj = yaml.safe_load(f.read_text())
        if obj.get("kind") not in TEMPLATE:
            continue
        tpl = TEMPLATE[obj["kind"]](obj)
        for field in ("labels", "annotations"):
            if tpl["metadata"].get(field) != pod["metadata"].get(field):
                print(f"FAIL {pod_file}: metadata.{field} differ from the pod template in {f.name}"); bad += 1
        if tpl["spec"] != pod["spec"]:
            print(f"FAIL {pod_file}: spec differs from the pod template in {f.name}"); bad += 1
        print(f"ok   {pod_file} = pod template of {f.name}")
sys.exit(1 if bad else 0)
PY
then
  fail "a pod.yaml does not match its workload"
fi

echo "== setup.sh scripts"
for script in samples/*/setup.sh; do
  if bash -n "$script" && [ -x "$script" ]; then echo "ok   $script"; else fail "$script does not parse or is not executable"; fi
done

if [ ! -x "$INJECTOR" ]; then
  echo "== SKIPPED: vaultlet-injector preview: no injector binary at $INJECTOR"
  echo "   (build it with 'cargo build -p vaultlet-injector' or set VAULTLET_INJECTOR)"
else
  echo "== vaultlet-injector preview of every workload ($INJECTOR)"
  out_dir="$(mktemp -d)"
  trap 'rm -rf "$out_dir"' EXIT
  for f in "${files[@]}"; do
    # samples/from-vault-k8s/*.yaml are vault-k8s workloads, convert's input: their
    # conversions (expected/) are previewed instead (injector/tests/convert.rs checks both).
    case "$f" in samples/from-vault-k8s/*.yaml) [[ "$f" == */expected/* ]] || continue ;; esac
    kind="$(sed -n 's/^kind: *//p' "$f" | head -n1)"
    case "$kind" in
      Pod | Deployment | StatefulSet | DaemonSet | ReplicaSet | Job | CronJob) ;;
      *) continue ;;
    esac
    args=()
    if [ -f "$(dirname "$f")/injector.args" ]; then
      mapfile -t args < <(grep -v '^[[:space:]]*\(#\|$\)' "$(dirname "$f")/injector.args")
    fi
    out="$out_dir/$(echo "$f" | tr '/' '_')"
    if ! "$INJECTOR" preview -f "$f" "${args[@]}" >"$out"; then
      fail "preview denied or failed for $f"
      continue
    fi
    if ! grep -q 'vaultlet.io/status: injected' "$out"; then
      fail "preview of $f did not inject the agent"
      continue
    fi
    if "$VALIDATE" --strict --quiet -k "$KUBE_VERSION" "$out"; then
      echo "ok   $f -> injected, valid"
    else
      fail "the preview of $f is not a valid $kind"
    fi
  done
fi

echo "== every setup.sh, twice, against a real OpenBao dev server"
"$(dirname "$0")/../samples/test-setup.sh" || fail "a setup.sh failed against OpenBao (see above)"

if [ "$failures" -gt 0 ]; then
  echo "validate-samples: $failures failure(s)"
  exit 1
fi
echo "validate-samples: all samples valid"
