#!/usr/bin/env bash
# OpenBao setup for the postgres-dynamic sample: the database engine at database/ connected to
# PostgreSQL, a role "orders" that creates short-lived login users, and kubernetes auth role
# "orders" for service account default/orders.
#   BAO_ADDR=... BAO_TOKEN=... KUBERNETES_HOST=... [KUBERNETES_CA_CERT=ca.pem] \
#   POSTGRES_URL='postgresql://USER:PASS@HOST:PORT/DB?sslmode=disable' ./setup.sh
# USER must be allowed to create roles. DB_DEFAULT_TTL / DB_MAX_TTL (default 1h / 24h) set the
# lease times; short ones (e.g. 30s / 2m) show renewal and rotation quickly.
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao
require_env POSTGRES_URL

# Split POSTGRES_URL into the connection URL template OpenBao wants and the credentials
# (OpenBao then never shows the password back). User and password must be URL-safe.
rest="${POSTGRES_URL#*://}"
userinfo="${rest%%@*}"
[ "$userinfo" != "$rest" ] || die "POSTGRES_URL must look like postgresql://USER:PASS@HOST:PORT/DB"
hostpart="${rest#*@}"
db_user="${userinfo%%:*}"
db_pass="${userinfo#*:}"

enable_engine database database
"$BAO" write database/config/orders-db \
  plugin_name=postgresql-database-plugin \
  connection_url="postgresql://{{username}}:{{password}}@${hostpart}" \
  username="$db_user" password="$db_pass" \
  allowed_roles=orders verify_connection=true >/dev/null
say "database/config/orders-db -> ${hostpart%%\?*}"
"$BAO" write database/roles/orders db_name=orders-db \
  creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';" \
  revocation_statements="REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";" \
  default_ttl="${DB_DEFAULT_TTL:-1h}" max_ttl="${DB_MAX_TTL:-24h}" >/dev/null
say "database/roles/orders (ttl ${DB_DEFAULT_TTL:-1h}, max ${DB_MAX_TTL:-24h})"

policy orders <<'HCL'
# Create credentials; renew and revoke their leases (the agent's token owns them).
path "database/creds/orders" {
  capabilities = ["read"]
}
HCL
kubernetes_auth
kubernetes_role orders orders "${NAMESPACE:-default}" orders
