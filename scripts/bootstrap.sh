#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: the broker and InfluxDB
# (Debian packages) when absent, and the Python dependencies into ./.venv.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_pkgs+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_pkgs+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_pkgs+=(mosquitto-clients)
command -v influxd >/dev/null 2>&1 || need_pkgs+=(influxdb)
# notifications and platform health (docs/alerting.md)
[ -x /usr/bin/prometheus-alertmanager ] || command -v prometheus-alertmanager >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
# the broker's subscription plugin (deploy/mosquitto/sensornet_subscribe_acl.c) is compiled
# on first use by wiring/mosquitto_plugin.py: a C compiler and Mosquitto's plugin headers
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
[ -f /usr/include/mosquitto_broker.h ] || need_pkgs+=(mosquitto-dev libmosquitto-dev)
# the scaled shape's broker (wiring/rabbitmq.py: a local 3-node cluster in tests and
# `sensornet services up --cluster 3`); the package's own service is not used
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_pkgs+=(rabbitmq-server)
# `make test` (bootstrap.sh --test) also needs what only tests use: PostgreSQL for the
# registry's second backend (tests/pg_server.py) and Chromium to render the API docs offline
# (tests/test_docs_offline.py), so neither is skipped for want of a package.
if [ "${1:-}" = "--test" ]; then
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_pkgs+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  echo "bootstrap: installing Debian packages: ${need_pkgs[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "bootstrap: run as root: apt-get update && apt-get install -y ${need_pkgs[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # policy-rc.d keeps the packages' own system services from starting: the project runs
  # its own instances on free ports under its state directory.
  $sudo apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

py=${PYTHON:-}
if [ -z "$py" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$cand; break
    fi
  done
fi
[ -n "$py" ] || { echo "bootstrap: Python >= 3.11 is required (apt-get install python3 python3-venv)" >&2; exit 1; }

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $py"
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
