#!/usr/bin/env bash
# Builds the local cluster's images as OCI archives, with no Docker engine and no registry, from
# release builds (statically linked; profile cluster-image: thin LTO, so that a test run after a
# change rebuilds in a minute or two) and Debian's busybox-static:
#   vaultlet/injector:0.1.0  /vaultlet-injector, as injector/Dockerfile describes
#   vaultlet/agent:0.1.0     /vaultlet-agent and CA certificates, as agent/Dockerfile describes
#   vaultlet/pause:0.1.0     the Pod sandbox process (tests/apps: vaultlet-pause)
#   vaultlet/testapp:0.1.0   busybox plus the samples' stand-in app (tests/apps: vaultlet-testapp)
#                            under the process names the samples signal (nginx, ...)
# Prints the directory holding <name>.tar; scripts/cluster.sh imports them into containerd.
#   scripts/images.sh
# The Dockerfiles build with musl; here the same files come from glibc with +crt-static (no musl
# target is installed here). The builds go to $VAULTLET_CACHE/target-images (outside the work
# tree, so a second run is incremental) and the archives to $VAULTLET_CACHE/images;
# VAULTLET_IMAGES_CACHE moves both (a second checkout building other images beside this one).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${VAULTLET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vaultlet}"
cache="${VAULTLET_IMAGES_CACHE:-$cache}"
out="$cache/images"
target="x86_64-unknown-linux-gnu"
export CARGO_TARGET_DIR="$cache/target-images"
tag="$(awk -F'"' '/^appVersion:/ { print $2 }' "$repo/charts/vaultlet/Chart.yaml")"

say() { printf '[images] %s\n' "$*" >&2; }

if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1; then
  say "installing busybox-static from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi

say "building static release binaries (first time: several minutes)"
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --profile cluster-image \
  --locked --target "$target" -p vaultlet-agent -p vaultlet-injector -p vaultlet-testapps)
bin="$CARGO_TARGET_DIR/$target/cluster-image"
mkdir -p "$out"
image() { python3 "$repo/scripts/oci-image.py" "$@"; }

image --name "docker.io/vaultlet/injector:$tag" --out "$out/injector.tar" \
  --user 65532:65532 --entrypoint '["/vaultlet-injector"]' --cmd '["serve"]' \
  --file "$bin/vaultlet-injector:/vaultlet-injector:0755"

image --name "docker.io/vaultlet/agent:$tag" --out "$out/agent.tar" \
  --user 65532:65532 --entrypoint '["/vaultlet-agent"]' --cmd '["run"]' \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --file "$bin/vaultlet-agent:/vaultlet-agent:0755" \
  --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644

image --name "docker.io/vaultlet/pause:$tag" --out "$out/pause.tar" \
  --user 65535:65535 --entrypoint '["/pause"]' \
  --file "$bin/vaultlet-pause:/pause:0755"

# busybox's applets as symlinks, the stand-in app under each process name a sample signals.
links=()
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || links+=(--symlink "/bin/$applet:busybox")
done
for name in nginx app report worker; do links+=(--symlink "/usr/local/bin/$name:vaultlet-testapp"); done
image --name "docker.io/vaultlet/testapp:$tag" --out "$out/testapp.tar" \
  --user 65532:65532 --entrypoint '["/usr/local/bin/vaultlet-testapp"]' \
  --env PATH=/usr/local/bin:/bin --dir /tmp:1777 \
  --file /bin/busybox:/bin/busybox:0755 \
  --file "$bin/vaultlet-testapp:/usr/local/bin/vaultlet-testapp:0755" "${links[@]}"

echo "$out"
