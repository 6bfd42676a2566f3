#!/usr/bin/env bash
# vaultlet on a real (local) Kubernetes: brings the local cluster up (scripts/cluster.sh), installs
# the chart, runs OpenBao for the Pods, deploys the nginx sample (its app replaced by the
# stand-in app of the node's images), rotates the secret and shows the reload from inside the Pod.
# Needs root (the node), Go, cargo and python3. Cleans up on exit and Ctrl-C (a cluster that was
# already running is left running, without the demo's objects).
#   scripts/cluster-demo.sh [--keep]     --keep: leave the cluster running at the end
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = --keep ] && keep=1

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
detail() { printf '    %s\n' "$*"; }

# shellcheck source=scripts/tools.sh
source scripts/tools.sh
ns=vaultlet-demo
bao_pid=""
# A cluster that was already up stays up; only the demo's own objects go.
was_up=0
case "$(scripts/cluster.sh status 2>/dev/null)" in *"kube-apiserver: running"*) was_up=1 ;; esac
cleanup() {
  local rc=$?
  trap - INT TERM EXIT
  [ -n "$bao_pid" ] && kill "$bao_pid" 2>/dev/null
  if [ "$was_up" = 1 ] || { [ "$keep" = 1 ] && [ "$rc" = 0 ]; }; then
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    kubectl delete clusterrolebinding vaultlet-demo-token-reviewer >/dev/null 2>&1 || true
    detail "cluster left running: eval \"\$(scripts/cluster.sh env)\"; scripts/cluster.sh down stops it"
  else
    scripts/cluster.sh down >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "1/6 building the Kubernetes binaries (first time: long; cached afterwards)"
scripts/cluster.sh build
step "2/6 local cluster: control plane + node (vaultlet's images built here), helm install of charts/vaultlet"
scripts/cluster.sh install
eval "$(scripts/cluster.sh env)"
kubectl get nodes -o wide

step "3/6 OpenBao for the Pods on the node's bridge address, kubernetes auth against this API server"
gw="$(sed -n 's/^HOST_FOR_PODS=//p' .cluster/endpoints.env)"
export BAO_ADDR="http://$gw:8200" BAO_TOKEN=root
bao server -dev -dev-root-token-id=root -dev-listen-address="$gw:8200" >.cluster/logs/demo-openbao.log 2>&1 &
bao_pid=$!
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.1; done
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" create serviceaccount token-reviewer --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create clusterrolebinding vaultlet-demo-token-reviewer --clusterrole=system:auth-delegator \
  --serviceaccount="$ns:token-reviewer" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
KUBERNETES_HOST="$(sed -n 's/^API_SERVER=//p' .cluster/endpoints.env)" \
  KUBERNETES_CA_CERT=.cluster/pki/ca.crt NAMESPACE="$ns" \
  KUBERNETES_REVIEWER_JWT="$(kubectl -n "$ns" create token token-reviewer --duration 1h)" \
  bash samples/nginx/setup.sh

step "4/6 the nginx sample, its app replaced by the node's stand-in (prints its file, reloads on SIGHUP)"
in_ns() { sed "s/^  namespace: default$/  namespace: $ns/" "$@"; }
in_ns samples/nginx/serviceaccount.yaml | kubectl apply -f - >/dev/null
in_ns samples/nginx/configmap.yaml | kubectl apply -f - >/dev/null
in_ns samples/nginx/deployment.yaml | kubectl create --dry-run=client -o json -f - | python3 -c '
import json, sys
d = json.load(sys.stdin)
t = d["spec"]["template"]
t["metadata"]["annotations"]["vaultlet.io/vault-addr"] = sys.argv[1]
t["metadata"]["annotations"]["vaultlet.io/refresh-interval"] = "1s"
app = t["spec"]["containers"][0]
app.update(image="vaultlet/testapp:0.1.0", imagePullPolicy="Never",
           command=["/usr/local/bin/nginx", "watch", "/vault/secrets/site.conf"])
for k in ("readinessProbe", "livenessProbe"):
    app.pop(k, None)
print(json.dumps(d))' "$BAO_ADDR" | kubectl -n "$ns" apply -f - >/dev/null
kubectl -n "$ns" rollout status deployment/nginx --timeout=120s
pod="$(kubectl -n "$ns" get pod -l app.kubernetes.io/name=nginx -o jsonpath='{.items[0].metadata.name}')"
detail "containers the API server stored (the webhook added the agent as a native sidecar):"
kubectl -n "$ns" get pod "$pod" -o jsonpath='{range .spec.initContainers[*]}    init {.name} (restartPolicy {.restartPolicy}){"\n"}{end}{range .spec.containers[*]}    app  {.name}{"\n"}{end}'

step "5/6 the rendered file, read inside the Pod"
kubectl -n "$ns" exec "$pod" -c nginx -- cat /vault/secrets/site.conf | sed 's/^/    /'

step "6/6 rotate the secret in OpenBao; the agent re-renders and sends SIGHUP to nginx"
bao kv put -mount=secret nginx/site greeting="hello from a rotated secret" api_key=rotated >/dev/null
for _ in $(seq 100); do
  kubectl -n "$ns" logs "$pod" -c nginx | grep -q "got SIGHUP" && break
  sleep 0.2
done
kubectl -n "$ns" logs "$pod" -c nginx | sed 's/^/    app log: /'
kubectl -n "$ns" exec "$pod" -c nginx -- cat /vault/secrets/site.conf | grep greeting -A2 | sed 's/^/    /'
step "done"
