#!/usr/bin/env bash
# OpenBao setup for the openshift sample: the KV v2 secret secret/ledger/db, a read-only
# policy, and kubernetes auth role "ledger" for service account $NAMESPACE/ledger (default:
# default).
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy ledger secret ledger/db
kubernetes_auth
kubernetes_role ledger ledger "${NAMESPACE:-default}" ledger
kv_put_once secret ledger/db username=ledger password="$(random_string)"
