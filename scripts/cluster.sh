#!/usr/bin/env bash
# A real single-machine Kubernetes cluster: a control plane on loopback and one node (kubelet,
# Debian's containerd/runc/CNI plugins, Pods on a bridge it makes, images from scripts/images.sh),
# built from the pinned Go modules in tests/cluster/k8s/go.mod (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet) and tests/cluster/helm/go.mod
# (helm). Nothing is fetched but Go modules and Debian packages. See docs/cluster.md.
#
#   scripts/cluster.sh up [--watch PID]   build once (cached), generate PKI, start; idempotent
#   scripts/cluster.sh install            up + `helm upgrade --install` of charts/vaultlet: the
#                                         injector as the chart's Pods behind its Service (with
#                                         no node: a host process behind webhook.url)
#   scripts/cluster.sh env                print the export lines (KUBECONFIG, PATH)
#   scripts/cluster.sh status             what runs
#   scripts/cluster.sh down               stop everything it started and wipe the cluster's data
#   scripts/cluster.sh build              only build (or find) the binaries
#   scripts/cluster.sh injector stop|start  take the injector away (Deployment scaled to 0, or
#                                         the host process stopped), or bring it back
#   scripts/cluster.sh cert-manager-crds  print the directory of cert-manager's CRDs (Go module)
#   scripts/cluster.sh images-dir         print the directory of the node's image archives
#
# --watch PID: a watchdog runs `down` once process PID is gone (test runs that die leave nothing).
# Settings (environment): VAULTLET_CACHE (binaries, Go caches; default ~/.cache/vaultlet),
# VAULTLET_CLUSTER_DIR (state; default <repo>/.cluster), VAULTLET_CLUSTER_NODE (1; 0: control
# plane only, no root needed), VAULTLET_CLUSTER_PORT_BASE (default 16400: etcd +79/+80, API
# server +43, controller-manager +57, scheduler +59, kubelet +50 (healthz +48), injector +44,
# injector admin +90), VAULTLET_CLUSTER_NET (default 0, 0-99: the Pod bridge vaultlet<N> on
# 10.213.<N>.0/24; a non-zero N also puts the kubelet's cgroups under /vaultlet<N>). Two
# clusters run side by side with a different VAULTLET_CLUSTER_DIR, PORT_BASE and NET each.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$repo/tests/cluster/k8s"
helm_mod="$repo/tests/cluster/helm"
dir="${VAULTLET_CLUSTER_DIR:-$repo/.cluster}"
cache="${VAULTLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vaultlet}"
base="${VAULTLET_CLUSTER_PORT_BASE:-16400}"
etcd_port=$((base + 79)) etcd_peer_port=$((base + 80)) api_port=$((base + 43))
kcm_port=$((base + 57)) sched_port=$((base + 59))
injector_port=$((base + 44)) injector_admin_port=$((base + 90))
kubelet_port=$((base + 50)) kubelet_healthz_port=$((base + 48))
# The node: one kubelet, containerd from Debian, Pods on a bridge this script makes. OpenBao and
# PostgreSQL of the tests listen on the bridge's host address for the Pods.
node="${VAULTLET_CLUSTER_NODE:-1}"
node_name=vaultlet-node
net="${VAULTLET_CLUSTER_NET:-0}"
case "$net" in [0-9] | [1-9][0-9]) ;; *) echo "VAULTLET_CLUSTER_NET must be 0-99, not $net" >&2; exit 2 ;; esac
pod_bridge="vaultlet$net" pod_subnet="10.213.$net.0/24" pod_gw="10.213.$net.1"
# A second kubelet on the machine must not see the first one's Pod cgroups as orphans.
cgroup_root=/
[ "$net" = 0 ] || cgroup_root="/vaultlet$net"
api="https://127.0.0.1:$api_port"

k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$mod/go.mod")"
helm_version="$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" { print $3 }' "$helm_mod/go.mod")"
# Keyed by the module files, so a new pin builds into a new folder and an old one stays usable.
build_key="$(cat "$mod/go.mod" "$mod/go.sum" "$mod"/etcd/*.go "$helm_mod/go.mod" "$helm_mod/go.sum" |
  sha256sum | cut -c1-12)"
bin_cache="$cache/k8s/$k8s_version-$build_key"
image_tag="$(awk -F'"' '/^appVersion:/ { print $2 }' "$repo/charts/vaultlet/Chart.yaml")"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet helm)

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# build

built() {
  local b
  for b in "${bins[@]}"; do [ -x "$bin_cache/bin/$b" ] || return 1; done
}

build() {
  if built; then
    link_bins
    return
  fi
  command -v go >/dev/null || die "go is needed to build the Kubernetes binaries (Go >= 1.24)"
  say "building Kubernetes $k8s_version, etcd and helm $helm_version from Go modules into $bin_cache"
  say "(first time only: about 15-25 minutes on 2 cores; progress below)"
  local minor ld p tmp start b
  minor="$(echo "$k8s_version" | cut -d. -f2)"
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  tmp="$bin_cache.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  start=$SECONDS
  # -v names each package as it is compiled: a line every 200 packages shows a long build lives.
  gobuild "$mod" "$tmp" -ldflags "$ld" ./etcd k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
  gobuild "$helm_mod" "$tmp" -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
    helm.sh/helm/v3/cmd/helm
  for b in "${bins[@]}"; do [ -x "$tmp/$b" ] || die "go build made no $b (see the lines above)"; done
  mkdir -p "$bin_cache"
  rm -rf "$bin_cache/bin" && mv "$tmp" "$bin_cache/bin"
  say "built in $((SECONDS - start)) s"
  link_bins
}

# gobuild MODULE OUT [go build args...]
gobuild() {
  local module=$1 out=$2
  shift 2
  (cd "$module" && GOFLAGS=-mod=readonly GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" \
    go build -v -trimpath -o "$out/" "$@") 2>&1 |
    awk '/^#|:[0-9]+:[0-9]+: / { print; next }
      { n++; if (n % 200 == 0) { printf "[cluster]   %d packages compiled\n", n; fflush() } }' >&2
}

link_bins() {
  mkdir -p "$dir/bin"
  local b
  for b in "${bins[@]}"; do ln -sfn "$bin_cache/bin/$b" "$dir/bin/$b"; done
}

# ---------------------------------------------------------------------------------------------
# PKI and kubeconfigs

# cert NAME CN [O] [SANS]: an EC P-256 key and a certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 org=${3:-} sans=${4:-} subj ext
  [ -s "$pki/$name.crt" ] && return
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  ext="$pki/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
}

# kubeconfig NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  local name=$1 out=$2
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: vaultlet-local
    cluster:
      server: $api
      certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
  - name: $name
    user:
      client-certificate-data: $(base64 -w0 <"$pki/$name.crt")
      client-key-data: $(base64 -w0 <"$pki/$name.key")
contexts:
  - name: vaultlet-local
    context: { cluster: vaultlet-local, user: $name }
current-context: vaultlet-local
EOF
  chmod 600 "$out"
}

pki() {
  pki="$dir/pki"
  mkdir -p "$pki" && chmod 700 "$pki"
  if [ ! -s "$pki/ca.crt" ]; then
    say "generating the cluster CA, certificates and the service-account signing key in $pki"
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=vaultlet-local-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$pki/ca.crt" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
  cert admin vaultlet-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  if [ ! -s "$pki/sa.key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null
    openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi
  kubeconfig admin "$dir/kubeconfig"
  kubeconfig controller-manager "$pki/controller-manager.kubeconfig"
  kubeconfig scheduler "$pki/scheduler.kubeconfig"
}

# ---------------------------------------------------------------------------------------------
# processes

alive() { [ -s "$dir/run/$1.pid" ] && kill -0 "$(cat "$dir/run/$1.pid")" 2>/dev/null; }

# start NAME ARGS...: run a binary from .cluster/bin in its own session, logging to logs/NAME.log.
start() {
  local name=$1
  shift
  if alive "$name"; then return; fi
  mkdir -p "$dir/run" "$dir/logs"
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

# wait_for WHAT SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
  local what=$1 limit=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      say "$what not ready after ${limit} s; last log lines:"
      tail -n 20 "$dir/logs/${what%% *}.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
}

kc() { "$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

up() {
  local watch="" t0=$SECONDS
  while [ $# -gt 0 ]; do
    case $1 in
      --watch) watch=$2; shift 2 ;;
      *) die "unknown argument to up: $1" ;;
    esac
  done
  build
  pki
  local b="$dir/bin"
  if alive kube-apiserver && kc get --raw /readyz >/dev/null 2>&1; then
    say "control plane already up at $api"
  else
    say "starting etcd on 127.0.0.1:$etcd_port"
    start etcd "$b/etcd" --name vaultlet --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
      --initial-cluster "vaultlet=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync --log-level warn
    wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"
    say "starting kube-apiserver on $api"
    start kube-apiserver "$b/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
      --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
      --client-ca-file "$pki/ca.crt" \
      --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
      --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
      --service-account-issuer "$api" --service-account-key-file "$pki/sa.pub" \
      --service-account-signing-key-file "$pki/sa.key" --api-audiences "$api" \
      --service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC \
      --enable-admission-plugins NodeRestriction --endpoint-reconciler-type none \
      --enable-aggregator-routing=true --anonymous-auth=true --profiling=false \
      --kubelet-preferred-address-types InternalIP \
      --allow-privileged=true --v 1
    wait_for kube-apiserver 60 kc get --raw /readyz
    say "starting kube-controller-manager and kube-scheduler"
    start kube-controller-manager "$b/kube-controller-manager" \
      --kubeconfig "$pki/controller-manager.kubeconfig" \
      --authentication-kubeconfig "$pki/controller-manager.kubeconfig" \
      --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$kcm_port" \
      --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
      --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
      --use-service-account-credentials --controllers '*,-cloud-node-lifecycle' \
      --leader-elect=false --profiling=false --v 1
    start kube-scheduler "$b/kube-scheduler" --kubeconfig "$pki/scheduler.kubeconfig" \
      --authentication-kubeconfig "$pki/scheduler.kubeconfig" \
      --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false
    wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$kcm_port/healthz"
    wait_for kube-scheduler 60 curl -skf "https://127.0.0.1:$sched_port/healthz"
    # Pods need their namespace's ServiceAccount, which the controller-manager creates.
    wait_for kube-controller-manager 60 kc -n default get serviceaccount default
    say "control plane up at $api in $((SECONDS - t0)) s"
  fi
  if [ "$node" = 1 ]; then
    node_up
  fi
  # What tests and tools read to find the cluster (testkit/src/cluster.rs); install adds the
  # injector's lines (kept here from an earlier install).
  local injector_lines
  injector_lines="$(grep '^INJECTOR' "$dir/endpoints.env" 2>/dev/null || true)"
  cat >"$dir/endpoints.env" <<EOF
API_SERVER=$api
NODE=$([ "$node" = 1 ] && echo "$node_name")
HOST_FOR_PODS=$pod_gw
EOF
  [ -z "$injector_lines" ] || echo "$injector_lines" >>"$dir/endpoints.env"
  if [ -n "$watch" ]; then
    # A watchdog outside every group it may have to kill: `down` once PID is gone.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down' \
      watchdog "$watch" "$repo/scripts/cluster.sh" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/run/watchdog.pid"
  fi
}

stop() {
  local name=$1 pid i
  [ -s "$dir/run/$name.pid" ] || return 0
  pid="$(cat "$dir/run/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    # Each component leads its own session: TERM the group, then KILL what is left.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/run/$name.pid"
}

down() {
  local name
  stop injector
  node_down
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name"; done
  # The watchdog itself may be the caller; stop it last, and never wait for ourselves.
  if [ -s "$dir/run/watchdog.pid" ] && [ "$(cat "$dir/run/watchdog.pid")" != "$PPID" ] \
    && [ "$(cat "$dir/run/watchdog.pid")" != "$$" ]; then
    kill "$(cat "$dir/run/watchdog.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir/run" "$dir/etcd" "$dir/injector" "$dir/kubelet" "$dir/containerd" "$dir/cni" \
    "$dir/pod-logs"
  say "down: nothing of the cluster runs"
}

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet injector watchdog; do
    if alive "$name"; then echo "$name: running (pid $(cat "$dir/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

env_lines() {
  echo "export KUBECONFIG=$dir/kubeconfig"
  echo "export PATH=$dir/bin:\$PATH"
}

# ---------------------------------------------------------------------------------------------
# the node: containerd + CNI bridge + kubelet

need_node_packages() {
  [ "$(id -u)" = 0 ] || die "the node needs root (kubelet, containerd, network namespaces)"
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian packages"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) ||
      die "apt-get install ${missing[*]} failed"
  fi
}

ctr_() { ctr --address "$dir/containerd/containerd.sock" --namespace k8s.io "$@"; }

node_config() {
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/kubelet" "$dir/pod-logs"
  cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/vaultlet/pause:$image_tag"
  # This machine gives root no CAP_SYS_RESOURCE: never ask for an OOM score below our own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
TOML
  # No masquerading and no route out: Pods reach the host's bridge address and nothing else.
  cat >"$dir/cni/net.d/10-vaultlet.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "vaultlet", "plugins": [
  {"type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false,
   "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_subnet", "gateway": "$pod_gw"}]],
            "dataDir": "$dir/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
  cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $pod_gw
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet.crt
tlsPrivateKeyFile: $pki/kubelet.key
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
podLogsDir: $dir/pod-logs
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
# No DNS server runs: Pods use addresses. The bridge address keeps the kubelet from warning.
clusterDNS: [$pod_gw]
maxPods: 60
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
nodeStatusReportFrequency: 10s
YAML
}

node_up() {
  need_node_packages
  cert kubelet "system:node:$node_name" system:nodes "DNS:$node_name,IP:$pod_gw"
  kubeconfig kubelet "$pki/kubelet.kubeconfig"
  if ! ip link show "$pod_bridge" >/dev/null 2>&1; then
    ip link add "$pod_bridge" type bridge
    ip addr add "$pod_gw/${pod_subnet#*/}" dev "$pod_bridge"
  fi
  ip link set "$pod_bridge" up
  if [ "$cgroup_root" != / ]; then
    local h
    for h in /sys/fs/cgroup/*/; do
      [ -e "$h/cgroup.procs" ] && mkdir -p "$h${cgroup_root#/}"
    done
  fi
  local images archive
  images="$("$repo/scripts/images.sh")"
  node_config
  if ! alive containerd; then
    say "starting containerd (its own root, state and socket under $dir/containerd)"
    start containerd containerd --config "$dir/containerd/config.toml" --log-level warn
    wait_for containerd 30 ctr_ version
  fi
  for archive in "$images"/*.tar; do
    ctr_ images import "$archive" >/dev/null
  done
  if ! alive kubelet; then
    say "starting kubelet (node $node_name, Pods on $pod_bridge $pod_subnet)"
    start kubelet "$dir/bin/kubelet" --config "$dir/kubelet/config.yaml" \
      --kubeconfig "$pki/kubelet.kubeconfig" --root-dir "$dir/kubelet" \
      --hostname-override "$node_name" --node-ip "$pod_gw" --v 1
  fi
  wait_for kubelet 90 node_ready
}

node_ready() {
  [ "$(kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

node_down() {
  if alive kubelet && alive kube-apiserver; then
    # The kubelet stops every Pod the normal way (network teardown, unmounts).
    kc delete pods --all --all-namespaces --grace-period=2 --wait=false >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 40))
    while [ $SECONDS -lt $deadline ] && [ -n "$(ctr_ tasks ls -q 2>/dev/null)" ]; do sleep 0.5; done
  fi
  stop kubelet
  if alive containerd; then
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*$dir/containerd" 2>/dev/null || true
  # Mounts the kubelet or containerd left (tmpfs volumes, rootfs), deepest first.
  local m
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  ip link del "$pod_bridge" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# install: the chart for real. With the node: the injector runs as the chart's Pods behind its
# Service, as in production. Control plane only (VAULTLET_CLUSTER_NODE=0): no Pod can run, so the
# injector runs on the host behind webhook.url.

release_ns=vaultlet-system
helm_() { "$dir/bin/helm" --kubeconfig "$dir/kubeconfig" "$@"; }

install() {
  up "$@"
  if [ "$node" = 1 ]; then install_in_cluster; else install_host; fi
  say "installed: labelled Pods in every namespace but kube-system, kube-public and $release_ns are injected"
}

# The injector's line(s) of endpoints.env, replacing the previous ones.
injector_endpoints() {
  grep -v '^INJECTOR' "$dir/endpoints.env" >"$dir/endpoints.env.new" || true
  printf '%s\n' "$@" >>"$dir/endpoints.env.new"
  mv "$dir/endpoints.env.new" "$dir/endpoints.env"
}

install_in_cluster() {
  stop injector # a host injector of an earlier install
  say "helm upgrade --install vaultlet charts/vaultlet: the injector as Pods behind Service vaultlet.$release_ns"
  # Pods on the node may choose the tests' Vault address for Pods (the bridge's host address),
  # plain or TLS (the cert-auth sample's listener requiring client certificates).
  helm_ upgrade --install vaultlet "$repo/charts/vaultlet" --namespace "$release_ns" --create-namespace \
    --set-json "injector.allowedVaultAddrs=[\"http://$pod_gw:8200\",\"https://$pod_gw:8200\"]" \
    --set-json "injector.podTlsVaultAddrs=[\"https://$pod_gw:8200\"]" \
    "${VAULTLET_HELM_ARGS[@]}" \
    --wait --timeout 180s >/dev/null || die "helm install failed; see: kubectl -n $release_ns get pods"
  wait_for "injector endpoints" 60 injector_endpoints_ready
  # The URL the API server calls (its error messages name it).
  injector_endpoints INJECTOR=service "INJECTOR_URL=https://vaultlet.$release_ns.svc:443/mutate" \
    "INJECTOR_NAMESPACE=$release_ns"
}

# Every replica of the Deployment is a ready endpoint of the Service.
injector_endpoints_ready() {
  local want ready
  want="$(kc -n "$release_ns" get deployment vaultlet -o jsonpath='{.spec.replicas}')"
  ready="$(kc -n "$release_ns" get endpointslices -l kubernetes.io/service-name=vaultlet \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' |
    grep -c . || true)"
  [ "$want" -gt 0 ] && [ "$ready" = "$want" ]
}

install_host() {
  local url="https://127.0.0.1:$injector_port/mutate"
  say "helm upgrade --install vaultlet charts/vaultlet (webhook.url=$url)"
  helm_ upgrade --install vaultlet "$repo/charts/vaultlet" \
    --namespace "$release_ns" --create-namespace --wait=false \
    --set "webhook.url=$url" "${VAULTLET_HELM_ARGS[@]}" >/dev/null
  # The chart made (or kept) the serving certificate; the host injector serves it.
  local tls="$dir/injector/tls"
  mkdir -p "$tls" && chmod 700 "$dir/injector"
  kc -n "$release_ns" get secret vaultlet-tls -o jsonpath='{.data.tls\.crt}' | base64 -d >"$tls/tls.crt.new"
  kc -n "$release_ns" get secret vaultlet-tls -o jsonpath='{.data.tls\.key}' | base64 -d >"$tls/tls.key.new"
  mv "$tls/tls.crt.new" "$tls/tls.crt" && mv "$tls/tls.key.new" "$tls/tls.key"
  injector_start
  injector_endpoints INJECTOR=host "INJECTOR_URL=$url" \
    "INJECTOR_ADMIN=http://127.0.0.1:$injector_admin_port"
}

# The host injector behind webhook.url, serving the certificate the chart made.
injector_start() {
  local injector="${VAULTLET_INJECTOR:-$repo/target/debug/vaultlet-injector}" tls="$dir/injector/tls"
  [ -s "$tls/tls.crt" ] || die "no injector certificate yet: run scripts/cluster.sh install"
  if [ ! -x "$injector" ]; then
    say "building vaultlet-injector"
    (cd "$repo" && cargo build -q -p vaultlet-injector)
    injector="$repo/target/debug/vaultlet-injector"
  fi
  if ! alive injector; then
    say "starting vaultlet-injector serve on 127.0.0.1:$injector_port (admin 127.0.0.1:$injector_admin_port)"
    # Pods on the node may choose the tests' Vault address for Pods, plain or TLS (the
    # cert-auth sample); no endpoints to leave, so no drain delay.
    VAULTLET_LISTEN_ADDR="127.0.0.1:$injector_port" VAULTLET_ADMIN_ADDR="127.0.0.1:$injector_admin_port" \
      VAULTLET_TLS_CERT_FILE="$tls/tls.crt" VAULTLET_TLS_KEY_FILE="$tls/tls.key" \
      VAULTLET_ALLOWED_VAULT_ADDRS="http://$pod_gw:8200,https://$pod_gw:8200" VAULTLET_DRAIN_DELAY=0s \
      VAULTLET_POD_TLS_VAULT_ADDRS="https://$pod_gw:8200" \
      start injector "$injector" serve
  fi
  wait_for injector 30 curl -sf "http://127.0.0.1:$injector_admin_port/readyz"
}

# Extra `helm` arguments for install, e.g. VAULTLET_HELM_ARGS="--set injector.vaultAddr=http://..."
read -r -a VAULTLET_HELM_ARGS <<<"${VAULTLET_HELM_ARGS:-}"

# cert-manager's CRDs (for the chart's cert-manager mode) from its published Go module, which
# carries them in deploy/crds; prints their directory. No cert-manager controller runs here.
cert_manager_version=v1.21.2
cert_manager_crds() {
  local d
  d="$(cd "$mod" && GOFLAGS=-mod=mod GOMODCACHE="$cache/go/mod" \
    go mod download -json "github.com/cert-manager/cert-manager@$cert_manager_version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$d/deploy/crds" ] || die "cert-manager $cert_manager_version has no deploy/crds"
  echo "$d/deploy/crds"
}

# injector stop|start: take the injector away (the webhook configuration stays) and bring it
# back. In the cluster: scale its Deployment to 0 and wait until its Pods are gone; then back to
# the replicas it had, every one a ready endpoint.
injector_cmd() {
  local mode
  mode="$(sed -n 's/^INJECTOR=//p' "$dir/endpoints.env" 2>/dev/null)"
  case "${1:-}:$mode" in
    stop:service)
      kc -n "$release_ns" get deployment vaultlet -o jsonpath='{.spec.replicas}' >"$dir/run/injector.replicas"
      kc -n "$release_ns" scale deployment vaultlet --replicas 0 >/dev/null
      kc -n "$release_ns" wait --for=delete pod -l app.kubernetes.io/name=vaultlet --timeout 90s >/dev/null
      say "injector stopped (Deployment scaled to 0)"
      ;;
    start:service)
      local n
      n="$(cat "$dir/run/injector.replicas" 2>/dev/null || echo 3)"
      [ "$n" -gt 0 ] || n=3
      kc -n "$release_ns" scale deployment vaultlet --replicas "$n" >/dev/null
      kc -n "$release_ns" rollout status deployment vaultlet --timeout 120s >/dev/null
      wait_for "injector endpoints" 60 injector_endpoints_ready
      say "injector started ($n replicas)"
      ;;
    stop:*) stop injector; say "injector stopped" ;;
    start:*) injector_start ;;
    *) die "usage: cluster.sh injector start|stop" ;;
  esac
}

case "${1:-}" in
  up) shift; up "$@" ;;
  install) shift; install "$@" ;;
  down) down ;;
  env) env_lines ;;
  status) status ;;
  build) build ;;
  injector) shift; injector_cmd "$@" ;;
  cert-manager-crds) cert_manager_crds ;;
  images-dir) echo "${VAULTLET_IMAGES_CACHE:-$cache}/images" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
