#!/usr/bin/env bash
# Checks pathgate's Prometheus alert rules with promtool (Debian package `prometheus`):
# syntax and semantics (`check rules`), then the rule unit tests (`test rules`).
# That every metric the rules and the Grafana dashboard use is exported by pathgate is a
# Rust unit test: cargo test --lib metrics::tests.
# Usage: deploy/check.sh   (installs promtool with apt-get when it is missing and we are root)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "promtool not found: install Debian's prometheus package (apt-get install prometheus)" >&2
    exit 1
  fi
fi
promtool check rules "$here/prometheus/pathgate-rules.yaml"
(cd "$here/prometheus" && promtool test rules pathgate-rules.test.yaml)
python3 -m json.tool "$here/grafana/pathgate-dashboard.json" >/dev/null 2>&1 \
  || { echo "deploy/grafana/pathgate-dashboard.json is not valid JSON" >&2; exit 1; }
echo "deploy/check.sh: rules and dashboard OK"
