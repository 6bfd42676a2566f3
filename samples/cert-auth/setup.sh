#!/usr/bin/env bash
# OpenBao setup for the cert-auth sample: TLS certificate auth at auth/cert with the role
# "payments" trusting one client CA, the KV v2 secret secret/payments/config and a read-only
# policy. The client CA is CLIENT_CA_CERT/CLIENT_CA_KEY (PEM files) when given, else one made
# here with openssl into $OUT_DIR/client-ca/. A client certificate for the Pod (CN payments,
# 24 h) is issued from it and written, with the CA of OpenBao's server certificate
# (VAULT_CA_CERT, when given), for the Kubernetes Secrets the Pod mounts:
#   $OUT_DIR/secrets/payments-vault-client/{tls.crt,tls.key}   # kubernetes.io/tls Secret
#   $OUT_DIR/secrets/vault-ca/ca.crt
#   BAO_ADDR=... BAO_TOKEN=... [VAULT_CA_CERT=ca.pem] [CLIENT_CA_CERT=... CLIENT_CA_KEY=...] ./setup.sh
# OpenBao must serve TLS (the login is over mutual TLS); a listener that only asks for client
# certificates is enough, one with tls_require_and_verify_client_cert must trust this CA.
# In production, let cert-manager issue the client certificate from the same CA instead.
# shellcheck source=samples/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_bao
command -v openssl >/dev/null || die "openssl is needed to issue the client certificate"

out="${OUT_DIR:-./out}"
ca_cert="${CLIENT_CA_CERT:-}" ca_key="${CLIENT_CA_KEY:-}"
if [ -z "$ca_cert" ]; then
  ca_cert="$out/client-ca/ca.crt" ca_key="$out/client-ca/ca.key"
  if [ ! -s "$ca_cert" ]; then
    mkdir -p "$out/client-ca"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
      -subj /CN=vaultlet-sample-client-ca -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$ca_key" -out "$ca_cert" 2>/dev/null)
    say "made a client CA in $out/client-ca"
  fi
fi
[ -r "$ca_cert" ] && [ -r "$ca_key" ] || die "CLIENT_CA_CERT and CLIENT_CA_KEY must be readable PEM files"

kv2_mount secret
kv_read_policy payments secret payments/config
enable_auth cert cert
"$BAO" write auth/cert/certs/payments certificate=@"$ca_cert" allowed_common_names=payments \
  token_policies=payments token_ttl=1h token_max_ttl=24h >/dev/null
say "role auth/cert/certs/payments -> client certificates for CN payments from $ca_cert, policy payments"
kv_put_once secret payments/config merchant_id=m-4711 psp_api_key="$(random_string)"

# The Pod's client certificate, issued afresh on every run.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$work/tls.key"
openssl req -new -key "$work/tls.key" -subj /CN=payments -out "$work/tls.csr"
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$ca_cert" -CAkey "$ca_key" -CAcreateserial \
  -CAserial "$work/ca.srl" -days 1 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null
secret_file payments-vault-client tls.crt "$(cat "$work/tls.crt")"
secret_file payments-vault-client tls.key "$(cat "$work/tls.key")"
say "wrote $out/secrets/payments-vault-client/{tls.crt,tls.key} (create the kubernetes.io/tls Secret from them)"
if [ -n "${VAULT_CA_CERT:-}" ]; then
  [ -r "$VAULT_CA_CERT" ] || die "VAULT_CA_CERT=$VAULT_CA_CERT is not a readable file"
  secret_file vault-ca ca.crt "$(cat "$VAULT_CA_CERT")"
  say "wrote $out/secrets/vault-ca/ca.crt (create the Secret vault-ca from it)"
fi
