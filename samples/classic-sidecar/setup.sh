#!/usr/bin/env bash
# OpenBao setup for the classic-sidecar sample: the KV v2 secret secret/prometheus/remote-write,
# a read-only policy, and kubernetes auth role "prometheus" for service account
# default/prometheus.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

kv2_mount secret
kv_read_policy prometheus secret prometheus/remote-write
kubernetes_auth
kubernetes_role prometheus prometheus "${NAMESPACE:-default}" prometheus
kv_put_once secret prometheus/remote-write url=https://metrics.example.com/api/v1/write \
  username=cluster-a password="$(random_string)"
