#!/usr/bin/env bash
# OpenBao setup for the approle sample: AppRole "billing" with a read-only policy, the KV v2
# secret secret/billing/config, and a fresh secret-id. The role-id and secret-id are written to
#   $OUT_DIR/secrets/billing-approle/{role-id,secret-id}
# for the Kubernetes Secret the Pod mounts:
#   kubectl -n default create secret generic billing-approle \
#     --from-file=role-id=$OUT_DIR/secrets/billing-approle/role-id \
#     --from-file=secret-id=$OUT_DIR/secrets/billing-approle/secret-id
#   BAO_ADDR=... BAO_TOKEN=... OUT_DIR=./out ./setup.sh
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao

enable_auth approle approle
kv2_mount secret
kv_read_policy billing secret billing/config
# The agent logs in again with the same secret-id whenever its token cannot be renewed, so the
# secret-id does not expire (secret_id_ttl=0); rotate it by re-running this script and updating
# the Kubernetes Secret. Restrict it further with secret_id_bound_cidrs in production.
"$BAO" write auth/approle/role/billing token_policies=billing token_ttl=1h token_max_ttl=24h \
  secret_id_ttl=0 secret_id_num_uses=0 >/dev/null
say "role auth/approle/role/billing, policy billing"
kv_put_once secret billing/config currency=EUR invoice_api_url=https://invoices.example.com \
  invoice_api_key="$(random_string)"

role_id="$("$BAO" read -field=role_id auth/approle/role/billing/role-id)"
secret_id="$("$BAO" write -f -field=secret_id auth/approle/role/billing/secret-id)"
secret_file billing-approle role-id "$role_id"
secret_file billing-approle secret-id "$secret_id"
say "wrote ${OUT_DIR:-./out}/secrets/billing-approle/{role-id,secret-id} (create the Kubernetes Secret from them)"
