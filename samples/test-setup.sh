#!/usr/bin/env bash
# Runs every samples/*/setup.sh twice against a real OpenBao dev server (and a real PostgreSQL
# for postgres-dynamic), both on loopback, then exercises what they configured. Used by
# scripts/validate-samples.sh; needs `source scripts/tools.sh` (VAULTLET_BAO, VAULTLET_PG_BIN).
#   samples/test-setup.sh
set -euo pipefail
samples="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

BAO="${VAULTLET_BAO:-}"
[ -x "$BAO" ] || { echo "FAIL VAULTLET_BAO is not set or not executable: source scripts/tools.sh" >&2; exit 1; }
[ -x "${VAULTLET_PG_BIN:-}/initdb" ] || { echo "FAIL VAULTLET_PG_BIN has no initdb: source scripts/tools.sh" >&2; exit 1; }
PATH="$(dirname "$BAO"):$PATH"

work="$(mktemp -d)"
bao_pid=""
pg_started=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$bao_pid" ] && kill "$bao_pid" 2>/dev/null && wait "$bao_pid" 2>/dev/null
  [ -n "$pg_started" ] && as_pg "$VAULTLET_PG_BIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for DESCRIPTION COMMAND...: polls COMMAND for up to 30 s.
wait_for() {
  local what="$1" deadline=$((SECONDS + 30))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "FAIL $what did not come up within 30 s" >&2; return 1; }
    sleep 0.1
  done
}

# OpenBao dev server.
bao_port="$(free_port)"
export BAO_ADDR="http://127.0.0.1:$bao_port" BAO_TOKEN="root-$RANDOM$RANDOM"
"$BAO" server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="127.0.0.1:$bao_port" \
  >"$work/bao.log" 2>&1 &
bao_pid=$!
wait_for "OpenBao at $BAO_ADDR" "$BAO" status || { tail -20 "$work/bao.log"; exit 1; }

# PostgreSQL with a password-authenticated superuser.
pg_port="$(free_port)"
pg_pass="pw$RANDOM$RANDOM"
mkdir -p "$work/pg" && printf '%s\n' "$pg_pass" >"$work/pgpass"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"
as_pg "$VAULTLET_PG_BIN/initdb" -D "$work/pg" -U postgres --auth=scram-sha-256 --pwfile="$work/pgpass" >/dev/null
as_pg "$VAULTLET_PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
pg_started=1
wait_for "PostgreSQL on port $pg_port" "$VAULTLET_PG_BIN/pg_isready" -h 127.0.0.1 -p "$pg_port"

export KUBERNETES_HOST="http://127.0.0.1:1"   # only stored by setup.sh; no login happens here
export KUBERNETES_CA_CERT="$work/k8s-ca.pem"
export POSTGRES_URL="postgresql://postgres:$pg_pass@127.0.0.1:$pg_port/postgres?sslmode=disable"
export OUT_DIR="$work/out"
# Any CA PEM will do for kubernetes_ca_cert: OpenBao's own dev CA is not available, so make one.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=test-ca \
  -keyout "$work/k8s-ca.key" -out "$KUBERNETES_CA_CERT" 2>/dev/null
# The jwt sample cannot reach an API server's OIDC discovery here: it gets a service-account
# key pair's public half instead, and a token signed with the private half is checked below.
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
export KUBERNETES_SA_PUBKEY="$work/sa.pub" KUBERNETES_ISSUER="https://kubernetes.default.svc"

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }

for script in "$samples"/*/setup.sh; do
  name="$(basename "$(dirname "$script")")"
  for run in 1 2; do
    if "$script" >"$work/$name.$run.log" 2>&1; then
      ok "$name/setup.sh run $run"
    else
      fail "$name/setup.sh run $run:"
      sed 's/^/       /' "$work/$name.$run.log"
    fi
  done
done

# What the scripts configured works.
check() {
  local what="$1"
  shift
  if "$@" >"$work/check.log" 2>&1; then ok "$what"; else fail "$what:"; sed 's/^/       /' "$work/check.log"; fi
}
check "approle: login with the written role-id and secret-id" \
  bao write auth/approle/login role_id=@"$OUT_DIR/secrets/billing-approle/role-id" \
  secret_id=@"$OUT_DIR/secrets/billing-approle/secret-id"
pg_login() {
  local creds user pass
  creds="$(bao read -format=json database/creds/orders)"
  user="$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["username"])')"
  pass="$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["password"])')"
  [ "$(PGPASSWORD="$pass" "$VAULTLET_PG_BIN/psql" -h 127.0.0.1 -p "$pg_port" -U "$user" -d postgres \
    -Atc 'select current_user')" = "$user" ]
}
check "postgres-dynamic: database/creds/orders issues a user that can log in" pg_login
check "pki-tls: pki/issue/web issues a certificate" \
  bao write pki/issue/web common_name=web.default.svc.cluster.local alt_names=web,web.default.svc
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# sa_jwt SUBJECT: an RS256 token as the API server would sign it, audience of the jwt sample.
sa_jwt() {
  local now head body
  now="$(date +%s)"
  head="$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)"
  body="$(printf '{"iss":"%s","sub":"%s","aud":["https://vault.example.com"],"iat":%s,"exp":%s}' \
    "$KUBERNETES_ISSUER" "$1" "$now" "$((now + 600))" | b64url)"
  printf '%s.%s.%s' "$head" "$body" \
    "$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$work/sa.key" | b64url)"
}
check "jwt: a token of default/inventory logs in" \
  bao write auth/jwt/login role=inventory jwt="$(sa_jwt system:serviceaccount:default:inventory)"
check "jwt: a token of another service account is refused" \
  sh -c "! bao write auth/jwt/login role=inventory jwt='$(sa_jwt system:serviceaccount:default:other)'"
check "cert-auth: role payments trusts the client CA that signed the written certificate" \
  sh -c "bao read -field=certificate auth/cert/certs/payments >'$work/role-ca.pem' && \
    openssl verify -CAfile '$work/role-ca.pem' '$OUT_DIR/secrets/payments-vault-client/tls.crt'"
for role in nginx orders web report backup prometheus legacy checkout; do
  check "kubernetes role $role has audience vault" sh -c "bao read -field=audience auth/kubernetes/role/$role | grep -qx vault"
done
for path in nginx/site billing/config report/config backup/s3 prometheus/remote-write legacy/config \
  inventory/config payments/config checkout/db; do
  check "kv secret/$path still at version 1 after two runs" \
    sh -c "bao kv metadata get -format=json -mount=secret $path | grep -q '\"current_version\": 1,'"
done

if [ "$failures" -gt 0 ]; then
  echo "test-setup: $failures failure(s)"
  exit 1
fi
echo "test-setup: every setup.sh ran twice and configured OpenBao as its sample needs"
