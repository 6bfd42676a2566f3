#!/usr/bin/env bash
# OpenBao setup for the jwt sample: JWT auth at auth/jwt that verifies service-account tokens
# itself, the KV v2 secret secret/inventory/config, a read-only policy, and the role
# "inventory" for service account $NAMESPACE/inventory (audience https://vault.example.com).
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=https://<api server> [KUBERNETES_CA_CERT=ca.pem] ./setup.sh
# OpenBao reads the API server's OIDC discovery document ($KUBERNETES_HOST/.well-known/
# openid-configuration) and its keys; let anonymous clients read them with
#   kubectl create clusterrolebinding service-account-issuer-discovery-unauthenticated \
#     --clusterrole=system:service-account-issuer-discovery --group=system:unauthenticated
# Where OpenBao cannot reach the API server, give it the service-account public key instead:
# KUBERNETES_SA_PUBKEY=sa.pub (PEM) and KUBERNETES_ISSUER=<the API server's --service-account-issuer>.
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

namespace="${NAMESPACE:-default}"
audience="${JWT_AUDIENCE:-https://vault.example.com}"

kv2_mount secret
kv_read_policy inventory secret inventory/config
enable_auth jwt jwt
if [ -n "${KUBERNETES_SA_PUBKEY:-}" ]; then
  [ -r "$KUBERNETES_SA_PUBKEY" ] || die "KUBERNETES_SA_PUBKEY=$KUBERNETES_SA_PUBKEY is not a readable file"
  require_env KUBERNETES_ISSUER
  "$BAO" write auth/jwt/config jwt_validation_pubkeys=@"$KUBERNETES_SA_PUBKEY" \
    bound_issuer="$KUBERNETES_ISSUER" >/dev/null
  say "auth/jwt verifies tokens with the public key in $KUBERNETES_SA_PUBKEY"
else
  require_env KUBERNETES_HOST
  ca=()
  if [ -n "${KUBERNETES_CA_CERT:-}" ]; then
    [ -r "$KUBERNETES_CA_CERT" ] || die "KUBERNETES_CA_CERT=$KUBERNETES_CA_CERT is not a readable file"
    ca=(oidc_discovery_ca_pem=@"$KUBERNETES_CA_CERT")
  fi
  "$BAO" write auth/jwt/config oidc_discovery_url="$KUBERNETES_HOST" "${ca[@]}" >/dev/null
  say "auth/jwt verifies tokens through the OIDC discovery of $KUBERNETES_HOST"
fi
"$BAO" write auth/jwt/role/inventory role_type=jwt user_claim=sub \
  bound_audiences="$audience" bound_subject="system:serviceaccount:$namespace:inventory" \
  token_policies=inventory token_ttl=1h token_max_ttl=24h >/dev/null
say "role auth/jwt/role/inventory -> service account $namespace/inventory, audience $audience, policy inventory"
kv_put_once secret inventory/config account=inventory-eu stock_api_token="$(random_string)"
