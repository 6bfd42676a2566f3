#!/usr/bin/env bash
# OpenBao setup for the init-only sample: the KV v2 secret secret/legacy/config, a read-only
# policy, and kubernetes auth role "legacy" for service account default/legacy.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy legacy secret legacy/config
kubernetes_auth
kubernetes_role legacy legacy "${NAMESPACE:-default}" legacy
kv_put_once secret legacy/config license_key="$(random_string)" smtp_host=smtp.example.com smtp_password="$(random_string)"
