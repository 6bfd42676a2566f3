#!/usr/bin/env bash
# OpenBao setup for the cronjob sample: the KV v2 secret secret/backup/s3, a read-only policy,
# and kubernetes auth role "backup" for service account default/backup.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy backup secret backup/s3
kubernetes_auth
kubernetes_role backup backup "${NAMESPACE:-default}" backup
kv_put_once secret backup/s3 access_key_id="AKIA$(random_string | tr a-f A-F)" \
  secret_access_key="$(random_string)$(random_string)" region=eu-west-1
