#!/usr/bin/env bash
# OpenBao setup for the nginx sample: kubernetes auth role "nginx" for service account
# default/nginx, a read-only policy, and the KV v2 secret secret/nginx/site.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=https://<api-server> [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kubernetes_auth
kv2_mount secret
policy nginx <<'HCL'
# Read the site secret and its metadata (the agent watches the KV version).
path "secret/data/nginx/site" {
  capabilities = ["read"]
}
path "secret/metadata/nginx/site" {
  capabilities = ["read"]
}
HCL
kubernetes_role nginx nginx "${NAMESPACE:-default}" nginx
kv_put_once secret nginx/site greeting="hello from OpenBao" api_key="$(random_string)"
say "done: change it with  bao kv put -mount=secret nginx/site greeting=... api_key=...  and nginx reloads"
