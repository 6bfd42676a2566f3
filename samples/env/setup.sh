#!/usr/bin/env bash
# OpenBao setup for the env sample: the KV v2 secret secret/payments/db, a read-only policy,
# and kubernetes auth role "payments" for service account default/payments.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy payments secret payments/db
kubernetes_auth
kubernetes_role payments payments "${NAMESPACE:-default}" payments
kv_put_once secret payments/db username=payments password="$(random_string)"
