#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine (idempotent):
#   - a Python 3.11/3.12 virtualenv in .venv with the project and its test tools
#     (durable-rules 2.0.28 does not import on 3.13)
#   - the embedded store: FerretDB 1.24.2 built with Go into .venv/bin/ferretdb, and the
#     PostgreSQL server it keeps its data in (installed from the distribution if missing)
#   - a running RabbitMQ on 127.0.0.1:5672 (installed from the distribution if missing)
#   - chromium from the distribution, for the console's browser tests
set -euo pipefail
cd "$(dirname "$0")/.."

# find_python LOW HIGH: a CPython 3.LOW .. 3.HIGH on PATH or under pyenv
find_python() {
  local low=$1 high=$2 candidates=()
  for minor in $(seq "$high" -1 "$low"); do candidates+=("python3.$minor"); done
  candidates+=(python3 python)
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E "^3\.[0-9]+\.[0-9]+$" | sort -rV); do
      candidates+=("$(pyenv root)/versions/$v/bin/python")
    done
  fi
  for py in "${candidates[@]}"; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c "import sys; sys.exit(0 if $low <= sys.version_info[1] <= $high and sys.version_info[0] == 3 else 1)" 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'; then
  PY=$(find_python 11 12) || { echo "setup: need Python 3.11 or 3.12 (durable-rules does not run on 3.13)" >&2; exit 1; }
  echo "setup: creating .venv with $PY"
  rm -rf .venv
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

# The embedded store (used when MONGODB_URL is not set): FerretDB, a MongoDB wire-protocol
# server, on a private PostgreSQL cluster the services start under var/store. FerretDB is built
# from its Go module at a pinned version; its build reads the version from a generated file
# (upstream's `task gen-version`), which the module archive leaves empty, so it is written here.
FERRETDB_VERSION=v1.24.2
if ! .venv/bin/ferretdb --version 2>/dev/null | grep -qx "version: $FERRETDB_VERSION"; then
  command -v go >/dev/null 2>&1 || { echo "setup: need Go (1.22 or newer) to build FerretDB for the embedded store" >&2; exit 1; }
  echo "setup: building FerretDB $FERRETDB_VERSION"
  src=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" |
        .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  build=$(mktemp -d) out="$PWD/.venv/bin/ferretdb"
  cp -r "$src/." "$build" && chmod -R u+w "$build"
  echo "$FERRETDB_VERSION" > "$build/build/version/version.txt"
  (cd "$build" && CGO_ENABLED=0 go build -trimpath -o "$out" ./cmd/ferretdb)
  rm -rf "$build"
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && ! command -v pg_config >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: the embedded store needs PostgreSQL's server programs; install postgresql, or set MONGODB_URL" >&2
    exit 1
  fi
fi

# Chromium from the distribution: the console's browser tests drive it through Playwright (which
# would otherwise download its own browser, and cannot here).
# A CJK font too, or the pages' Chinese shows as empty boxes in the tests' screenshots.
if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium and a Chinese font"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
  else
    echo "setup: the console's browser tests need chromium and a Chinese font; install them (apt-get install chromium fonts-wqy-microhei)" >&2
    exit 1
  fi
fi

# RabbitMQ: the services and the integration tests need it.
if ! command -v rabbitmqctl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing rabbitmq-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  else
    echo "setup: RabbitMQ is not installed and cannot be installed here; install rabbitmq-server" >&2
    exit 1
  fi
fi
# RabbitMQ needs many file descriptors: each vhost's message stores and each quorum queue's files
# stay open, and the test suite makes a vhost per module. Started from a shell with the usual soft
# limit of 1024 it had 765 in use while idle, and at the limit it neither opens a vhost nor accepts
# a connection (the suite then fails by the dozen). A node already running with a low limit is
# restarted with a higher one.
RABBITMQ_MIN_FDS=16384
rabbitmq_fd_limit() {
  rabbitmq-diagnostics -q status 2>/dev/null | sed -n 's/^Total: [0-9]*, limit: \([0-9]*\).*/\1/p' | head -n 1
}
if rabbitmqctl -q status >/dev/null 2>&1; then
  limit=$(rabbitmq_fd_limit)
  if [ -n "$limit" ] && [ "$limit" -lt $((RABBITMQ_MIN_FDS / 2)) ]; then
    echo "setup: restarting RabbitMQ with more file descriptors (it runs with a limit of $limit)"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do rabbitmqctl -q ping >/dev/null 2>&1 || break; sleep 1; done
  fi
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  echo "setup: starting RabbitMQ"
  ulimit -n "$RABBITMQ_MIN_FDS" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  # the distribution's rabbitmq-server switches to the rabbitmq user with su, whose PAM session sets
  # the soft limit back to 1024; the node's own environment file (sourced after su) raises it again
  env_file=/etc/rabbitmq/rabbitmq-env.conf
  if [ -w "$(dirname "$env_file")" ] && ! grep -qs "zero-errand: file descriptors" "$env_file"; then
    printf '%s\n' "ulimit -S -n \$(ulimit -H -n) 2>/dev/null || true  # zero-errand: file descriptors (scripts/setup.sh)" \
      >> "$env_file"
  fi
  rabbitmq-server -detached
  # -detached returns before the node has registered; await_startup fails at once on a node
  # that is not there yet, so wait for it to answer first (up to 2 minutes).
  for _ in $(seq 1 60); do
    rabbitmqctl -q ping >/dev/null 2>&1 && break
    sleep 2
  done
fi
timeout 120 rabbitmqctl await_startup >/dev/null
echo "setup: done ($(.venv/bin/python --version), RabbitMQ $(rabbitmqctl -q version 2>/dev/null || echo up))"
