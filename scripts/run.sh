#!/usr/bin/env bash
# The two set-up commands of the README:
#   scripts/run.sh demo   - the whole system on embedded defaults (needs only Python)
#   scripts/run.sh test   - install what the tests need (system packages, virtualenv) and run them
# Extra arguments go to `camperhub demo` or to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
verb="${1:-}"; shift || true

PY="${PYTHON:-python3}"
venv() {
  local extras="$1"
  if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "python3-venv is missing: installing it"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv python3-pip
  fi
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
}

case "$verb" in
  demo)
    venv "edge,sim,server"
    exec .venv/bin/camperhub demo "$@"
    ;;
  test)
    bash scripts/install-system-deps.sh
    venv "test"
    # axe-core for the accessibility tests, exactly as locked (integrity-checked by npm)
    [ -f tests/a11y/node_modules/axe-core/axe.min.js ] || npm ci --prefix tests/a11y --no-audit --no-fund --silent
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
