#!/usr/bin/env bash
# The production stack, run for real: builds the image, brings up docker/compose.yaml (web, worker,
# beat, PostgreSQL, Redis, after a one-shot migrate) with podman and podman-compose, checks it from
# outside (docker/compose_check.py: ingest, read back, worker killed mid-ingest loses nothing), and
# tears it down whatever happens. `make compose-test`; run as root.
#
# No Docker daemon or image registry is needed: PostgreSQL and Redis come from Debian's packages
# (docker/compose.local.yaml), on a base image made with debootstrap (docker/podman/base.sh), and
# the server image is docker/Dockerfile on docker/podman/python.Containerfile. Missing tools are
# installed with apt. The runtime is runc; containers get explicit open-file and process limits,
# which must not exceed the host's (a sandbox may refuse to raise them).
#
# Environment: COMPOSE_TEST_PORT (web on 127.0.0.1, default: a free port), COMPOSE_TEST_KEEP=1 (leave
# the stack up), OCTOTRACE_PODMAN_CACHE (debootstrap tarball, default /var/tmp/octotrace-podman).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started)) s"; }
step() { echo "== $* ($(elapsed))"; }

if [ "$(id -u)" != 0 ]; then
  echo "FAIL compose-test: run as root (podman without a user namespace, debootstrap)" >&2
  exit 1
fi

# --- Tools ------------------------------------------------------------------------------------
# dnsname lets containers find each other by service name on the stack's network.
PACKAGES="podman podman-compose runc debootstrap golang-github-containernetworking-plugin-dnsname"
need_install=false
for tool in podman podman-compose runc debootstrap; do command -v "$tool" >/dev/null || need_install=true; done
[ -x /usr/lib/cni/dnsname ] || need_install=true
if $need_install; then
  step "installing $PACKAGES"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null; }
fi

CACHE=${OCTOTRACE_PODMAN_CACHE:-/var/tmp/octotrace-podman}
LOGS=var/compose-test
mkdir -p "$CACHE" "$LOGS"
export OCTOTRACE_PODMAN_CACHE=$CACHE

# Podman's settings for this run only (CONTAINERS_CONF replaces the system files): runc, and limits
# at or below the host's, since raising one needs a capability a sandbox may not grant.
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt 16384 ] && nofile=16384
nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 8192 ] && nproc=8192
cat >"$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$CACHE/containers.conf

# --- Images -----------------------------------------------------------------------------------
PYTHON_IMAGE=localhost/octotrace-python:3.11-bookworm
step "base image (debootstrap, cached)"
timeout 1800 docker/podman/base.sh
step "python, postgres and redis images (layers cached)"
timeout 1200 podman build -q -t "$PYTHON_IMAGE" -f docker/podman/python.Containerfile docker/podman >/dev/null
timeout 1200 podman build -q -t localhost/octotrace-postgres:15-bookworm -f docker/podman/postgres.Containerfile docker/podman >/dev/null
timeout 1200 podman build -q -t localhost/octotrace-redis:7-bookworm -f docker/podman/redis.Containerfile docker/podman >/dev/null
step "server image (docker/Dockerfile on $PYTHON_IMAGE)"
# pip in the build trusts the host's certificate authorities (a proxy that inspects TLS); they are
# mounted for the build's RUN steps only, not copied into the image.
ca_mount=()
[ -f /etc/ssl/certs/ca-certificates.crt ] \
  && ca_mount=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
timeout 1200 podman build -q "${ca_mount[@]}" --build-arg BASE_IMAGE="$PYTHON_IMAGE" -t localhost/octotrace:latest \
  -f docker/Dockerfile . >/dev/null
# What the image holds: the server as a non-root user, no demo.
podman run --rm localhost/octotrace:latest sh -c \
  'test "$(id -u)" != 0 && test ! -e demo && test ! -e examples && ! python -c "import demo" 2>/dev/null' \
  || { echo "FAIL image: runs as root or holds the demo"; exit 1; }
echo "PASS image: runs as $(podman run --rm localhost/octotrace:latest id -un), no demo or examples"

# --- Stack ------------------------------------------------------------------------------------
PROJECT=octotracetest
COMPOSE=(podman-compose -p "$PROJECT" -f docker/compose.yaml -f docker/compose.local.yaml)
PORT=${COMPOSE_TEST_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export OCTOTRACE_BASE_IMAGE=$PYTHON_IMAGE OCTOTRACE_WEB_BIND=127.0.0.1 OCTOTRACE_WEB_PORT=$PORT
export SECRET_KEY POSTGRES_PASSWORD
SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')
POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
# A batch left "processing" by the killed worker is re-enqueued by the next sweep (every 60 s) once
# it is this old, instead of after the production default of 300 s.
export OCTOTRACE_BATCH_STUCK_SECONDS=15

teardown() {
  status=$?
  if [ "${COMPOSE_TEST_KEEP:-}" = 1 ]; then
    echo "stack left up (COMPOSE_TEST_KEEP=1): ${COMPOSE[*]} down -v"
  else
    step "teardown"
    for service in web worker beat migrate; do
      podman logs "${PROJECT}_${service}_1" >"$LOGS/$service.log" 2>&1 || true
    done
    timeout 300 "${COMPOSE[@]}" down -v -t 5 >>"$LOGS/compose.log" 2>&1 || true
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  fi
  if [ "$status" = 0 ]; then
    echo "PASS compose-test ($(elapsed)): image, stack, ingest, read API, worker restart"
  else
    echo "FAIL compose-test ($(elapsed)): see above; container logs in $LOGS/"
  fi
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# A stack left by an interrupted run.
timeout 300 "${COMPOSE[@]}" down -v -t 1 >"$LOGS/compose.log" 2>&1 || true

wait_for() { # what, deadline in seconds, command...
  local what=$1 deadline=$(($(date +%s) + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "FAIL $what: not within the deadline"; return 1; fi
    sleep 1
  done
}

# podman-compose 1.0 starts services in order but does not wait for health or completion, so the
# order is kept here: databases healthy, then migrate to completion, then web, worker and beat.
step "postgres and redis"
timeout 300 "${COMPOSE[@]}" up -d postgres redis >>"$LOGS/compose.log" 2>&1
wait_for "postgres ready" 120 podman exec "${PROJECT}_postgres_1" pg_isready -U octotrace -d octotrace
wait_for "redis ready" 60 podman exec "${PROJECT}_redis_1" redis-cli ping
step "migrate"
timeout 300 "${COMPOSE[@]}" up -d --no-deps migrate >>"$LOGS/compose.log" 2>&1
migrated=$(timeout 300 podman wait "${PROJECT}_migrate_1")
if [ "$migrated" != 0 ]; then
  podman logs "${PROJECT}_migrate_1" | tail -n 30
  echo "FAIL migrate: exit status $migrated"
  exit 1
fi
step "web, worker and beat on 127.0.0.1:$PORT"
timeout 300 "${COMPOSE[@]}" up -d --no-deps web worker beat >>"$LOGS/compose.log" 2>&1

step "checks"
timeout 900 python3 docker/compose_check.py --url "http://127.0.0.1:$PORT" \
  --web "${PROJECT}_web_1" --worker "${PROJECT}_worker_1"
