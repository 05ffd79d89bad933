#!/usr/bin/env bash
# Set-up shared by scripts/run-tests, scripts/run-demo and .ci/run, safe to re-run:
#   - the Debian packages the reference codec (tests/refcodec) needs: Debian's
#     clojure (which brings a Java runtime) and the jars of data.fressian,
#     fressian, zstd-jni and data.json,
#   - a started PostgreSQL on 127.0.0.1:5432 (the test server),
#   - a virtualenv in .venv with tuiaudit installed from pyproject.toml (+ test extra).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(clojure libdata-fressian-clojure libfressian-java libzstd-jni-java libdata-json-clojure)
# promtool checks /metrics (tests/test_metrics.py); systemd-analyze verifies
# contrib/systemd/tuiaudit.service (tests/test_notify.py).
DEBS+=(prometheus systemd)
# zsh and fish parse the generated completion scripts (tests/test_completion.py).
DEBS+=(zsh fish)
# wrk: the C load generator of `bench/ingest_http.py --wrk` (issue 20's measurement).
DEBS+=(wrk)
# sqlite3.h and the libsqlite3.so link name: the SQLite writer's compiled bulk
# insert (storage/_sqlite_bulk.pyx) links the system SQLite, as Python's _sqlite3 does.
DEBS+=(libsqlite3-dev)
# libfaketime steps one fleet host's wall clock (bench/fleet, tests/test_fleet.py);
# iproute2 makes the fleet's network namespaces.
DEBS+=(libfaketime iproute2)

install_debs() {
  local missing=()
  for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: the reference-codec tests need: apt-get install -y ${missing[*]} (run as root)" >&2
    return 0
  fi
  echo "setup: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

start_postgres() {
  command -v pg_isready >/dev/null 2>&1 || { echo "setup: PostgreSQL is not installed; its tests will skip outside CI" >&2; return 0; }
  pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  echo "setup: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  echo "setup: PostgreSQL did not start" >&2
}

make_venv() {
  local py=${PYTHON:-python3} stamp=.venv/.setup-pyproject-sha256 want
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  # The install is editable, so only a changed pyproject.toml (dependencies,
  # packages) needs pip again: .ci/run and scripts/run-tests both call set-up.
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" >"$stamp"
}

install_debs
start_postgres
make_venv
