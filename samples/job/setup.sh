#!/usr/bin/env bash
# OpenBao setup for the job sample: the KV v2 secret secret/report/config, a read-only policy,
# and kubernetes auth role "report" for service account default/report.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy report secret report/config
kubernetes_auth
kubernetes_role report report "${NAMESPACE:-default}" report
kv_put_once secret report/config bucket=reports-2026 upload_token="$(random_string)"
