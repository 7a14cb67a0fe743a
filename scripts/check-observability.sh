#!/usr/bin/env bash
# Checks churnwatch's dashboards and Prometheus rules against a live target:
#
#   scripts/check-observability.sh http://127.0.0.1:PORT/metrics
#
# 1. Static: `promtool check rules` on deploy/prometheus/{recording,alerts}.yml,
#    `promtool check config` on deploy/prometheus/prometheus.yml, every YAML
#    file under deploy/ parses, the Grafana dashboard is well-formed JSON.
# 2. Live: a real Prometheus on a free loopback port scrapes the target every
#    second with both rule files loaded. Once it has a few scrapes, every
#    PromQL expression of the dashboard (targets[].expr, Grafana variables
#    replaced: $__rate_interval etc. by 1m, dashboard variables by .*) and of
#    the rule files is evaluated through /api/v1/query:
#      - dashboard and recording-rule expressions must return series;
#      - an alert expression is usually empty on a healthy system, so it need
#        only be valid; each side of its top-level comparisons and set
#        operators (and, or, unless) must return series instead, which
#        catches a misspelt metric or label that would keep it silent forever;
#      - every rule must evaluate without error in Prometheus (/api/v1/rules).
#    Expressions legitimately empty on a quiet system go in ALLOW_EMPTY
#    (in the Python below), with the reason.
#
# Installs Debian's `prometheus` package (promtool + prometheus) when either
# tool is missing; that needs root. Needs python3 with PyYAML (installs
# python3-yaml the same way). The live phase fails after 60 s.
# Exit status: 0 all good, 1 a check failed, 2 usage or setup problem.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${1:-}"
if [ -z "$TARGET" ] || [ "$#" -ne 1 ]; then
  echo "usage: $0 http://HOST:PORT/metrics" >&2
  exit 2
fi
RULES=("$ROOT/deploy/prometheus/recording.yml" "$ROOT/deploy/prometheus/alerts.yml")
DASHBOARD="$ROOT/deploy/grafana/churnwatch.json"

TMP="$(mktemp -d)"
PROM_PID=""
POLICY_RC_ADDED=""
cleanup() {
  if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
  if [ -n "$POLICY_RC_ADDED" ]; then rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $* (install with: apt-get install $*; needs root)" >&2
    exit 2
  fi
  # Debian packages with a daemon start it on install where systemd runs; a
  # check must not leave a system Prometheus behind, so forbid it meanwhile.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_RC_ADDED=1
  fi
  echo "== installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt_install prometheus
fi
PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    apt_install python3 python3-yaml
  fi
  PY=/usr/bin/python3
fi
echo "== $(prometheus --version 2>&1 | head -n1)"

echo "== promtool check rules"
promtool check rules "${RULES[@]}"

echo "== promtool check config (deploy/prometheus/prometheus.yml, rule paths pointed at the repository)"
sed -e "s#/etc/prometheus/#$ROOT/deploy/prometheus/#" "$ROOT/deploy/prometheus/prometheus.yml" >"$TMP/compose-prometheus.yml"
promtool check config "$TMP/compose-prometheus.yml"

echo "== YAML and dashboard JSON"
"$PY" "$ROOT/scripts/observability/lint.py" "$ROOT" "$DASHBOARD"

echo "== live: Prometheus scraping $TARGET every 1s"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
"$PY" "$ROOT/scripts/observability/prometheus_config.py" "$TARGET" "$TMP/prometheus.yml" "${RULES[@]}"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!

status=0
timeout 60 "$PY" "$ROOT/scripts/observability/live.py" "$PORT" "$DASHBOARD" "${RULES[@]}" || status=$?

if [ "$status" -ne 0 ]; then
  if [ "$status" -eq 124 ]; then echo "live check timed out after 60 s" >&2; fi
  echo "== Prometheus log" >&2
  tail -n 20 "$TMP/prometheus.log" >&2 || true
  exit 1
fi
echo "observability checks passed"
