#!/usr/bin/env bash
# OpenBao setup for the pki-tls sample: a PKI engine at pki/ with a root CA (created once),
# role "web" that issues 24 h certificates for the web Service's names, and kubernetes auth
# role "web" for service account default/web.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# In production, issue from an intermediate CA, not the root.
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

enable_engine pki pki -max-lease-ttl=87600h
# Where clients find the CA (AIA); set before the CA is generated so it is embedded in it.
"$BAO" write pki/config/urls issuing_certificates="$BAO_ADDR/v1/pki/ca" >/dev/null
if ! "$BAO" read -field=certificate pki/cert/ca >/dev/null 2>&1; then
  "$BAO" write pki/root/generate/internal common_name="vaultlet samples root CA" \
    key_type=ec key_bits=256 ttl=87600h >/dev/null
  say "generated the root CA of pki/"
fi
# No generate_lease: the agent reads each certificate's `expiration` and fetches a new one
# before it, so certificates need no lease (OpenBao recommends against leases for PKI).
"$BAO" write pki/roles/web \
  allowed_domains="web,web.default.svc,web.default.svc.cluster.local" allow_bare_domains=true \
  allow_subdomains=false allow_ip_sans=false key_type=ec key_bits=256 \
  server_flag=true client_flag=false max_ttl=72h ttl=24h >/dev/null
say "pki/roles/web"
policy web <<'HCL'
path "pki/issue/web" {
  capabilities = ["create", "update"]
}
HCL
kubernetes_auth
kubernetes_role web web "${NAMESPACE:-default}" web
say "CA certificate for clients:  bao read -field=certificate pki/cert/ca"
