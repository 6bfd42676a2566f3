#!/usr/bin/env bash
# Helpers shared by the samples' setup.sh scripts (sourced, not run).
# Every helper is idempotent: running a setup.sh twice leaves OpenBao in the same state.
#
# Environment:
#   BAO_ADDR, BAO_TOKEN   OpenBao address and a token allowed to configure it (required)
#   KUBERNETES_HOST       API server URL OpenBao calls for TokenReview (kubernetes auth samples)
#   KUBERNETES_CA_CERT    PEM file with the API server's CA; when set, OpenBao is told to use it
#                         instead of its own pod's service-account CA/JWT (disable_local_ca_jwt)
#   OUT_DIR               where files for Kubernetes Secrets are written (default: ./out)

set -euo pipefail

BAO="${BAO:-bao}"

die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
say() { printf 'setup: %s\n' "$*" >&2; }

require_env() {
  local name
  for name in "$@"; do
    [ -n "${!name:-}" ] || die "environment variable $name is not set (see the sample's README section)"
  done
}

require_bao() {
  command -v "$BAO" >/dev/null || die "the bao CLI is not on PATH (source scripts/tools.sh)"
  require_env BAO_ADDR BAO_TOKEN
  export BAO_ADDR BAO_TOKEN
  "$BAO" token lookup >/dev/null || die "cannot use BAO_TOKEN against $BAO_ADDR"
}

# enable_auth PATH TYPE: enables an auth method unless PATH is already mounted.
enable_auth() {
  local mounts
  mounts="$("$BAO" auth list -format=json)"
  case "$mounts" in
    *"\"$1/\""*) ;;
    *)
      "$BAO" auth enable -path="$1" "$2" >/dev/null
      say "enabled $2 auth at auth/$1"
      ;;
  esac
}

# enable_engine PATH TYPE [ARGS...]: enables a secrets engine unless PATH is already mounted.
enable_engine() {
  local path="$1" type="$2"
  shift 2
  local mounts
  mounts="$("$BAO" secrets list -format=json)"
  case "$mounts" in
    *"\"$path/\""*) ;;
    *)
      "$BAO" secrets enable -path="$path" "$@" "$type" >/dev/null
      say "enabled $type secrets engine at $path/"
      ;;
  esac
}

# kubernetes_auth: enables and configures auth/kubernetes to review tokens at $KUBERNETES_HOST.
kubernetes_auth() {
  require_env KUBERNETES_HOST
  enable_auth kubernetes kubernetes
  if [ -n "${KUBERNETES_CA_CERT:-}" ]; then
    [ -r "$KUBERNETES_CA_CERT" ] || die "KUBERNETES_CA_CERT=$KUBERNETES_CA_CERT is not a readable file"
    # OpenBao outside the cluster: the API server's CA, and (KUBERNETES_REVIEWER_JWT) a token
    # of a service account bound to system:auth-delegator for its TokenReview calls.
    local reviewer=()
    [ -n "${KUBERNETES_REVIEWER_JWT:-}" ] && reviewer=(token_reviewer_jwt="$KUBERNETES_REVIEWER_JWT")
    "$BAO" write auth/kubernetes/config kubernetes_host="$KUBERNETES_HOST" \
      kubernetes_ca_cert=@"$KUBERNETES_CA_CERT" disable_local_ca_jwt=true "${reviewer[@]}" >/dev/null
  else
    # OpenBao runs in the cluster: it uses its own service account's CA and token.
    "$BAO" write auth/kubernetes/config kubernetes_host="$KUBERNETES_HOST" >/dev/null
  fi
}

# kubernetes_role NAME SERVICE_ACCOUNT NAMESPACE POLICY: a role for one service account.
# The audience matches the injector's projected token (--sa-token-audience, default "vault").
kubernetes_role() {
  "$BAO" write "auth/kubernetes/role/$1" \
    bound_service_account_names="$2" bound_service_account_namespaces="$3" \
    audience="${VAULTLET_SA_TOKEN_AUDIENCE:-vault}" \
    token_policies="$4" token_ttl=1h token_max_ttl=24h >/dev/null
  say "role auth/kubernetes/role/$1 -> service account $3/$2, policy $4"
}

# policy NAME < HCL: writes a policy from stdin.
policy() {
  "$BAO" policy write "$1" - >/dev/null
  say "policy $1"
}

# kv_put_once MOUNT PATH KEY=VALUE...: writes a KV v2 secret only if it does not exist yet,
# so re-running setup does not create new versions (or overwrite a value changed since).
kv_put_once() {
  local mount="$1" path="$2"
  shift 2
  if "$BAO" kv get -mount="$mount" "$path" >/dev/null 2>&1; then
    say "kv $mount/$path exists, left as it is"
  else
    "$BAO" kv put -mount="$mount" "$path" "$@" >/dev/null
    say "kv $mount/$path written"
  fi
}

# kv2_mount MOUNT: makes sure MOUNT is a KV v2 engine (dev servers already have secret/).
kv2_mount() {
  enable_engine "$1" kv -version=2
}

# secret_file SECRET KEY VALUE: writes $OUT_DIR/secrets/SECRET/KEY (mode 0600), the content of
# one key of the Kubernetes Secret the Pod mounts.
secret_file() {
  local dir="${OUT_DIR:-./out}/secrets/$1"
  mkdir -p "$dir"
  (umask 077 && printf '%s' "$3" >"$dir/$2")
}

# kv_read_policy NAME MOUNT PATH...: policy NAME may read these KV v2 secrets and their
# metadata (the agent reads metadata to notice new versions).
kv_read_policy() {
  local name="$1" mount="$2" path hcl=""
  shift 2
  for path in "$@"; do
    hcl+="path \"$mount/data/$path\" {
  capabilities = [\"read\"]
}
path \"$mount/metadata/$path\" {
  capabilities = [\"read\"]
}
"
  done
  printf '%s' "$hcl" | policy "$name"
}

# random_string: 16 hex characters, for sample secret values.
random_string() {
  od -An -N8 -tx1 /dev/urandom | tr -d ' \n'
}
