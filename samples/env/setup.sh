#!/usr/bin/env bash
# OpenBao setup for the env sample: the KV v2 secret secret/checkout/db, a read-only policy,
# and kubernetes auth role "checkout" for service account default/checkout.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy checkout secret checkout/db
kubernetes_auth
kubernetes_role checkout checkout "${NAMESPACE:-default}" checkout
kv_put_once secret checkout/db username=checkout password="$(random_string)"
