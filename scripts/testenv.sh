#!/usr/bin/env bash
# medic's test environment: installs and starts the real services the tests talk to.
#
#   scripts/testenv.sh up       install what is missing, start what is not running (idempotent)
#   scripts/testenv.sh env      print `export MEDIC_TEST_...=...` lines: eval "$(scripts/testenv.sh env)"
#   scripts/testenv.sh status   say what runs
#   scripts/testenv.sh down     stop RabbitMQ, the MongoDB stand-in and the SMTP servers
#   scripts/testenv.sh prune    remove leftover containers/networks/volumes labelled medic.test=true
#   scripts/testenv.sh podman   install Podman and build the busybox image into it (part of `up`)
#
# What `up` provides, all bound to 127.0.0.1 (see /work/shared/TESTING.md for why these):
#   Docker Engine       the running one if `docker info` answers, else Debian's docker.io started here
#   docker-compose      Debian's v1.29
#   busybox test image  medic-test/busybox:latest, FROM scratch + busybox-static, built offline
#   RabbitMQ            Debian's rabbitmq-server, AMQP on 5672, guest/guest
#   MongoDB stand-in    nx-27017 (PyPI; MongoDB wire protocol over in-memory SQLite) on 27017
#   SMTP, plain         scripts/smtp_server.py on 2525, no TLS, no AUTH
#   SMTP, STARTTLS      on 2526, STARTTLS required, AUTH PLAIN/LOGIN required (medic/medic-secret)
#   SMTPS               on 2527, implicit TLS, AUTH required (same user)
#   Chromium            Debian's, headless, for the status page test (tests/api.rs)
#   Podman              Debian's podman (4.3) and the busybox image in its storage, for
#                       tests/podman.rs, which starts its own `podman system service`
#   HAProxy             Debian's, installed only: tests/socket_proxy.rs starts its own on a free port
#
# State lives in .testenv/ at the repo root (gitignored): logs/, pids/, venv/, tls/, smtp/.
# Messages go to stderr, so that `env`'s stdout holds nothing but the export lines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.testenv"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
VENV="$STATE/venv"
TLS="$STATE/tls"
SMTP_DIR="$STATE/smtp"
SMTP_SCRIPT="$ROOT/scripts/smtp_server.py"

BUSYBOX_IMAGE="medic-test/busybox:latest"
BUSYBOX_DOCKERFILE="$ROOT/docker/testenv/busybox.Dockerfile"

RABBITMQ_PORT=5672
MONGODB_PORT=27017
SMTP_PORT=2525
SMTP_TLS_PORT=2526
SMTPS_PORT=2527
SMTP_USER="medic"
SMTP_PASSWORD="medic-secret"

# Python packages of the venv, pinned: both were checked against medic's clients.
PY_REQUIREMENTS=(aiosmtpd==1.4.6 nx-27017==0.8.1)

# Bounded waits, in seconds.
DOCKER_WAIT=60
RABBITMQ_WAIT=120
SERVICE_WAIT=30

export DEBIAN_FRONTEND=noninteractive
# Erlang's epmd is started by whichever Erlang program runs first, rabbitmqctl included, and
# listens on every interface unless this says otherwise: set it for all of them.
export ERL_EPMD_ADDRESS=127.0.0.1

log() { echo "testenv: $*" >&2; }

# Print the last lines of each given log file that exists.
tail_logs() {
  local f
  for f in "$@"; do
    if [[ -s "$f" ]]; then
      echo "----- last lines of $f -----" >&2
      tail -n 40 "$f" >&2
      echo "-----" >&2
    fi
  done
}

die() {
  log "ERROR: $*"
  exit 1
}

# die_with_logs "message" logfile...
die_with_logs() {
  local msg="$1"
  shift
  log "ERROR: $msg"
  tail_logs "$@"
  exit 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Who listens on a port, for error messages.
port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null || true
  fi
}

# True when an SMTP server on 127.0.0.1:$1 greets with 220 (plain-text greeting). A subshell,
# since a failed `exec` redirection would end the script itself.
smtp_greets() (
  line=""
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  IFS= read -r -t 3 line <&3 || true
  printf 'QUIT\r\n' >&3 2>/dev/null || true
  [[ "$line" == 220* ]]
) 2>/dev/null

# True when a TLS server on 127.0.0.1:$1 completes a handshake against our CA.
tls_answers() {
  timeout 10 openssl s_client -connect "127.0.0.1:$1" -CAfile "$TLS/ca.pem" -verify_return_error \
    -brief </dev/null >/dev/null 2>&1
}

# The pid recorded for a service we started, if that process is still alive and is the one we
# started (its command line holds the marker saved beside the pid), else nothing.
service_pid() {
  local name="$1" pid marker
  [[ -f "$PIDS/$name.pid" ]] || return 1
  pid="$(head -n1 "$PIDS/$name.pid")"
  marker="$(sed -n 2p "$PIDS/$name.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n "$marker" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"; then
    return 1
  fi
  echo "$pid"
}

# start_bg NAME MARKER LOGFILE CMD...: start CMD detached (own session, so it outlives the shell
# and its process group), record its pid and a marker found in its command line.
start_bg() {
  local name="$1" marker="$2" logfile="$3"
  shift 3
  mkdir -p "$PIDS" "$LOGS"
  echo "=== $(date -u +%FT%TZ) starting: $*" >>"$logfile"
  # In a non-interactive shell a background job is no process-group leader, so setsid does not
  # fork and $! is the service's own pid.
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  printf '%s\n%s\n' "$!" "$marker" >"$PIDS/$name.pid"
}

# wait_for DESCRIPTION SECONDS PID LOGFILES CMD...: poll CMD until it succeeds. Fails with the
# logs' tails after SECONDS, or at once if PID (when not 0) has exited. LOGFILES: paths joined by '|'.
wait_for() {
  local desc="$1" secs="$2" pid="$3" logfiles
  IFS='|' read -r -a logfiles <<<"$4"
  shift 4
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [[ "$pid" != 0 ]] && ! kill -0 "$pid" 2>/dev/null; then
      die_with_logs "$desc exited during startup" "${logfiles[@]}"
    fi
    if ((SECONDS >= deadline)); then
      die_with_logs "$desc did not become ready within ${secs}s" "${logfiles[@]}"
    fi
    sleep 0.3
  done
}

# stop_service NAME: TERM the process we started, KILL it after 10 s.
stop_service() {
  local name="$1" pid i
  if pid="$(service_pid "$name")"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop on TERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

# ---------------------------------------------------------------------------------------------
# Debian packages

APT_UPDATED=0

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# ensure_apt PKG...: install the packages not yet installed (Debian as root only).
ensure_apt() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing Debian packages: ${missing[*]}. This script installs them only on Debian as root; install them (or their equivalent) yourself and rerun."
  fi
  mkdir -p "$LOGS"
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    apt-get update >>"$LOGS/apt.log" 2>&1 || die_with_logs "apt-get update failed" "$LOGS/apt.log"
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  # Packaged services (rabbitmq-server) must not start themselves from their postinst: they would
  # listen on every interface. policy-rc.d answering 101 forbids it; put one in place unless the
  # machine already has its own.
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 || rc=$?
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die_with_logs "apt-get install ${missing[*]} failed" "$LOGS/apt.log"
}

# ---------------------------------------------------------------------------------------------
# Docker

docker_answers() {
  docker info >/dev/null 2>&1
}

ensure_docker() {
  if docker_answers; then
    log "Docker Engine: running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
  else
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
      if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "no Docker Engine answers 'docker info', and this script can install one only on Debian as root. Install and start Docker Engine (and docker-compose), then rerun."
      fi
      ensure_apt docker.io
    fi
    local pid
    if pid="$(service_pid dockerd)"; then
      log "Docker Engine: dockerd (pid $pid) is starting"
    else
      [[ "$(id -u)" == 0 ]] || die "no Docker Engine answers 'docker info', and starting dockerd needs root"
      # A pid file left by a dockerd that died makes a new one refuse to start.
      if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
        log "removing stale /var/run/docker.pid"
        rm -f /var/run/docker.pid
      fi
      log "Docker Engine: starting dockerd (log: $LOGS/dockerd.log)"
      start_bg dockerd dockerd "$LOGS/dockerd.log" dockerd
      pid="$(head -n1 "$PIDS/dockerd.pid")"
    fi
    wait_for "Docker Engine (dockerd)" "$DOCKER_WAIT" "$pid" "$LOGS/dockerd.log" docker_answers
    log "Docker Engine: running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
  fi
  if ! command -v docker-compose >/dev/null 2>&1; then
    ensure_apt docker-compose
  fi
}

# Assembles the busybox image's build context in $STATE/busybox-context from the busybox binary
# $1, and prints its path.
busybox_context() {
  local bin="$1"
  local ctx="$STATE/busybox-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/bin" "$ctx/tmp" "$ctx/etc" "$ctx/root" "$ctx/www" "$ctx/usr"
  chmod 1777 "$ctx/tmp"
  cp "$bin" "$ctx/bin/busybox"
  local applet
  for applet in $("$ctx/bin/busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$ctx/bin/$applet"
  done
  ln -s ../bin "$ctx/usr/bin"
  ln -s ../bin "$ctx/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ctx/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/etc/group"
  echo "medic test image" >"$ctx/www/index.html"
  echo "$ctx"
}

# The busybox image: FROM scratch, /bin/busybox from busybox-static and a symlink per applet.
# Rebuilt only when missing or when the Dockerfile or the busybox binary changed (a hash of both
# is kept as a label).
ensure_busybox_image() {
  ensure_apt busybox-static
  local bin
  bin="$(dpkg -L busybox-static | grep -m1 '/busybox$')" || die "busybox-static installs no busybox binary?"
  local want have
  want="$(busybox_hash "$bin")"
  have="$(docker image inspect --format '{{ index .Config.Labels "medic.test.hash" }}' "$BUSYBOX_IMAGE" 2>/dev/null || true)"
  if [[ "$have" == "$want" ]]; then
    log "image $BUSYBOX_IMAGE: present"
    return 0
  fi
  log "image $BUSYBOX_IMAGE: building"
  local ctx
  ctx="$(busybox_context "$bin")"
  DOCKER_BUILDKIT=0 docker build -q -f "$BUSYBOX_DOCKERFILE" --label "medic.test.hash=$want" \
    -t "$BUSYBOX_IMAGE" "$ctx" >>"$LOGS/docker-build.log" 2>&1 ||
    die_with_logs "building $BUSYBOX_IMAGE failed" "$LOGS/docker-build.log"
  local out
  out="$(docker run --rm --label medic.test=true --network none "$BUSYBOX_IMAGE" sh -c 'echo hi' 2>&1)" ||
    die "the new image $BUSYBOX_IMAGE does not run: $out"
  [[ "$out" == hi ]] || die "the new image $BUSYBOX_IMAGE printed '$out' instead of 'hi'"
  log "image $BUSYBOX_IMAGE: built"
}

# The hash the busybox image is labelled with: of the Dockerfile and the busybox binary $1.
busybox_hash() {
  # Bump the "context-v" number when the context assembled by busybox_context changes.
  (echo context-v1; cat "$BUSYBOX_DOCKERFILE" "$1") | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------------------------------------
# Podman (a second engine, for tests/podman.rs)

# Debian's podman, and the busybox image built into Podman's own storage (no image can be
# pulled; `podman build` of the same context works offline). Podman's service is not started
# here: each test starts its own on a socket of its own.
ensure_podman() {
  ensure_apt podman busybox-static
  local bin want have
  bin="$(dpkg -L busybox-static | grep -m1 '/busybox$')" || die "busybox-static installs no busybox binary?"
  want="$(busybox_hash "$bin")"
  have="$(podman image inspect --format '{{ index .Config.Labels "medic.test.hash" }}' "$BUSYBOX_IMAGE" 2>/dev/null || true)"
  if [[ "$have" == "$want" ]]; then
    log "Podman image $BUSYBOX_IMAGE: present"
    return 0
  fi
  log "Podman image $BUSYBOX_IMAGE: building"
  local ctx
  ctx="$(busybox_context "$bin")"
  mkdir -p "$LOGS"
  podman build -q -f "$BUSYBOX_DOCKERFILE" --label "medic.test.hash=$want" \
    -t "$BUSYBOX_IMAGE" "$ctx" >>"$LOGS/podman-build.log" 2>&1 ||
    die_with_logs "building $BUSYBOX_IMAGE in Podman failed" "$LOGS/podman-build.log"
  # The sandbox refuses Podman's default rlimits (TESTING.md "Podman"): give the hard ones.
  local out nofile
  nofile="$(ulimit -Hn)"
  out="$(podman run --rm --label medic.test=true --network=none --ulimit "nofile=$nofile:$nofile" \
    --ulimit nproc=4096:4096 "$BUSYBOX_IMAGE" sh -c 'echo hi' 2>>"$LOGS/podman-build.log")" ||
    die_with_logs "the new Podman image $BUSYBOX_IMAGE does not run" "$LOGS/podman-build.log"
  [[ "$out" == hi ]] || die "the new Podman image $BUSYBOX_IMAGE printed '$out' instead of 'hi'"
  log "Podman image $BUSYBOX_IMAGE: built"
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ

rabbit_env() {
  # Loopback only: AMQP, epmd and the Erlang distribution port.
  env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" "$@"
}

rabbit_running() {
  timeout 30 rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1
}

rabbit_log() {
  echo "/var/log/rabbitmq/rabbit@$(hostname -s).log"
}

# True when some process listens on 5672 elsewhere than on loopback.
rabbit_on_all_interfaces() {
  command -v ss >/dev/null 2>&1 || return 1
  ss -Hltn "sport = :$RABBITMQ_PORT" 2>/dev/null | awk '{print $4}' | grep -qvE '^(127\.0\.0\.1|\[::1\]):'
}

ensure_rabbitmq() {
  ensure_apt rabbitmq-server
  if port_open "$RABBITMQ_PORT"; then
    rabbit_running ||
      die "port $RABBITMQ_PORT is taken by something that is not a RabbitMQ node rabbitmqctl can reach: $(port_owner "$RABBITMQ_PORT")"
    if ! rabbit_on_all_interfaces; then
      log "RabbitMQ: running on 127.0.0.1:$RABBITMQ_PORT"
      return 0
    fi
    # E.g. one that the package started: it listens on every interface.
    log "RabbitMQ: a node listens beyond loopback; restarting it bound to 127.0.0.1"
    timeout 60 rabbitmqctl shutdown >>"$LOGS/rabbitmq.log" 2>&1 || true
  fi
  log "RabbitMQ: starting (takes ~10 s; logs: $LOGS/rabbitmq.log, $(rabbit_log))"
  mkdir -p "$LOGS"
  # -detached returns at once; the node is then booting. A node that is already up but not
  # answering makes this fail, which the wait below reports.
  (cd /tmp && rabbit_env rabbitmq-server -detached) >>"$LOGS/rabbitmq.log" 2>&1 || true
  # `await_startup` fails at once while the node has not registered with epmd yet, so retry it.
  wait_for "RabbitMQ" "$RABBITMQ_WAIT" 0 "$LOGS/rabbitmq.log|$(rabbit_log)" rabbit_running
  if ! port_open "$RABBITMQ_PORT"; then
    die_with_logs "RabbitMQ runs but does not listen on 127.0.0.1:$RABBITMQ_PORT" "$LOGS/rabbitmq.log" "$(rabbit_log)"
  fi
  log "RabbitMQ: running on 127.0.0.1:$RABBITMQ_PORT"
}

stop_rabbitmq() {
  if command -v rabbitmqctl >/dev/null 2>&1 && rabbit_running; then
    log "stopping RabbitMQ"
    timeout 60 rabbitmqctl shutdown >>"$LOGS/rabbitmq.log" 2>&1 || log "rabbitmqctl shutdown failed (see $LOGS/rabbitmq.log)"
  fi
  # epmd outlives the node; stop it too when nothing else uses it.
  if command -v epmd >/dev/null 2>&1; then
    epmd -kill >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------------------------------------
# Python venv (nx-27017, aiosmtpd)

ensure_venv() {
  local want="${PY_REQUIREMENTS[*]}"
  if [[ -x "$VENV/bin/python" ]] && [[ "$(cat "$VENV/.medic-requirements" 2>/dev/null)" == "$want" ]] &&
    "$VENV/bin/python" -c 'import aiosmtpd, nx_27017, pymongo' >/dev/null 2>&1; then
    log "Python venv: ready ($VENV)"
    return 0
  fi
  # A venv whose interpreter went away (python upgraded or removed) cannot be repaired: remake it.
  if [[ -e "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$VENV"
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    ensure_apt python3 python3-venv
  fi
  mkdir -p "$LOGS"
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "Python venv: creating $VENV"
    if ! python3 -m venv "$VENV" >>"$LOGS/pip.log" 2>&1; then
      # Debian's python3 needs python3-venv for ensurepip.
      rm -rf "$VENV"
      ensure_apt python3-venv
      python3 -m venv "$VENV" >>"$LOGS/pip.log" 2>&1 || die_with_logs "python3 -m venv failed" "$LOGS/pip.log"
    fi
  fi
  log "Python venv: installing ${PY_REQUIREMENTS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}" \
    >>"$LOGS/pip.log" 2>&1 || die_with_logs "pip install ${PY_REQUIREMENTS[*]} failed" "$LOGS/pip.log"
  "$VENV/bin/python" -c 'import aiosmtpd, nx_27017, pymongo' >>"$LOGS/pip.log" 2>&1 ||
    die_with_logs "the venv cannot import aiosmtpd, nx_27017 and pymongo after install" "$LOGS/pip.log"
  echo "$want" >"$VENV/.medic-requirements"
}

# ---------------------------------------------------------------------------------------------
# Services run from the venv

# ensure_service NAME PORT MARKER READY-CHECK -- CMD...
# Already running (our pid alive) and ready: nothing to do. Port taken by a stranger: error.
# Otherwise start CMD and wait for READY-CHECK (a function name, called with PORT).
ensure_service() {
  local name="$1" port="$2" marker="$3" check="$4"
  shift 5
  local logfile="$LOGS/$name.log" pid
  if pid="$(service_pid "$name")"; then
    wait_for "$name (127.0.0.1:$port)" "$SERVICE_WAIT" "$pid" "$logfile" "$check" "$port"
    log "$name: running on 127.0.0.1:$port (pid $pid)"
    return 0
  fi
  if port_open "$port"; then
    die "$name: port $port is taken by a process this script did not start (pid file $PIDS/$name.pid): $(port_owner "$port"). Stop it (or run 'scripts/testenv.sh down' from the checkout that started it) and rerun."
  fi
  start_bg "$name" "$marker" "$logfile" "$@"
  pid="$(head -n1 "$PIDS/$name.pid")"
  wait_for "$name (127.0.0.1:$port)" "$SERVICE_WAIT" "$pid" "$logfile" "$check" "$port"
  log "$name: started on 127.0.0.1:$port (pid $pid, log $logfile)"
}

# A MongoDB handshake (pymongo comes with nx-27017), not just an open port.
mongo_pings() {
  port_open "$1" &&
    "$VENV/bin/python" - "$1" >/dev/null 2>&1 <<'EOF'
import sys, pymongo
c = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}", serverSelectionTimeoutMS=2000)
assert c.admin.command("ping").get("ok") == 1
EOF
}

ensure_mongodb() {
  # --db memory: a fresh, empty store each start. nx-27017 also writes a pid file of its own
  # (default in /tmp), so point that into our state dir.
  ensure_service mongodb "$MONGODB_PORT" "-p $MONGODB_PORT" mongo_pings -- \
    "$VENV/bin/nx-27017" --db memory --host 127.0.0.1 -p "$MONGODB_PORT" \
    --log-file "$LOGS/mongodb.nx.log" --pid-file "$PIDS/mongodb.nx.pid"
}

# The TLS material: a CA and a server certificate it signed, for localhost and 127.0.0.1. A
# separate CA (not one self-signed leaf) because rustls/webpki refuse a CA certificate used as
# the server's own. Remade when missing or expiring within a day.
ensure_certs() {
  if [[ -s "$TLS/ca.pem" && -s "$TLS/server.pem" && -s "$TLS/server.key" ]] &&
    openssl x509 -checkend 86400 -noout -in "$TLS/server.pem" >/dev/null 2>&1 &&
    openssl x509 -checkend 86400 -noout -in "$TLS/ca.pem" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || ensure_apt openssl
  log "TLS: making a test CA and a server certificate in $TLS"
  rm -rf "$TLS"
  mkdir -p "$TLS" "$LOGS"
  cat >"$TLS/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = medic test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  cat >"$TLS/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
  {
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -config "$TLS/ca.cnf" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" &&
      openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
        -keyout "$TLS/server.key" -out "$TLS/server.csr" &&
      openssl x509 -req -sha256 -days 825 -in "$TLS/server.csr" -CA "$TLS/ca.pem" \
        -CAkey "$TLS/ca.key" -CAcreateserial -extfile "$TLS/server.ext" -out "$TLS/server.pem" &&
      openssl verify -CAfile "$TLS/ca.pem" "$TLS/server.pem"
  } >>"$LOGS/tls.log" 2>&1 || die_with_logs "making the test certificates failed" "$LOGS/tls.log"
  # Servers still holding the old certificate must pick up the new one.
  stop_service smtp-tls
  stop_service smtps
}

ensure_smtp() {
  ensure_certs
  mkdir -p "$SMTP_DIR/plain" "$SMTP_DIR/tls" "$SMTP_DIR/smtps"
  local py="$VENV/bin/python"
  ensure_service smtp "$SMTP_PORT" "--port $SMTP_PORT" smtp_greets -- \
    "$py" -u "$SMTP_SCRIPT" --port "$SMTP_PORT" --dir "$SMTP_DIR/plain"
  ensure_service smtp-tls "$SMTP_TLS_PORT" "--port $SMTP_TLS_PORT" smtp_greets -- \
    "$py" -u "$SMTP_SCRIPT" --port "$SMTP_TLS_PORT" --dir "$SMTP_DIR/tls" \
    --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" \
    --auth-user "$SMTP_USER" --auth-password "$SMTP_PASSWORD"
  ensure_service smtps "$SMTPS_PORT" "--port $SMTPS_PORT" tls_answers -- \
    "$py" -u "$SMTP_SCRIPT" --port "$SMTPS_PORT" --dir "$SMTP_DIR/smtps" --implicit-tls \
    --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" \
    --auth-user "$SMTP_USER" --auth-password "$SMTP_PASSWORD"
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up() {
  local t0=$SECONDS
  mkdir -p "$LOGS" "$PIDS"
  ensure_docker
  ensure_busybox_image
  ensure_venv
  ensure_rabbitmq
  ensure_mongodb
  ensure_smtp
  ensure_apt chromium fonts-dejavu-core  # tests/api.rs: the status page in headless Chromium
  ensure_podman
  ensure_apt haproxy  # tests/socket_proxy.rs: a real socket proxy (each test starts its own)
  ensure_apt e2fsprogs util-linux  # tests/store_faults.rs: mkfs.ext4, mount, findmnt for disk faults
  log "up: everything is running ($((SECONDS - t0))s). Load the variables with: eval \"\$(scripts/testenv.sh env)\""
}

cmd_down() {
  stop_service smtps
  stop_service smtp-tls
  stop_service smtp
  stop_service mongodb
  stop_rabbitmq
  # The Docker Engine stays: it is the machine's, and others' containers may run on it. A dockerd
  # this script started is stopped only with `down --docker`.
  if [[ "${1:-}" == "--docker" ]]; then
    stop_service dockerd
  fi
  log "down: stopped"
}

cmd_env() {
  local kv
  for kv in \
    "MEDIC_TEST_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2f" \
    "MEDIC_TEST_MONGODB_URL=mongodb://127.0.0.1:$MONGODB_PORT" \
    "MEDIC_TEST_SMTP_HOST=127.0.0.1" \
    "MEDIC_TEST_SMTP_PORT=$SMTP_PORT" \
    "MEDIC_TEST_SMTP_DIR=$SMTP_DIR/plain" \
    "MEDIC_TEST_SMTP_TLS_PORT=$SMTP_TLS_PORT" \
    "MEDIC_TEST_SMTP_TLS_DIR=$SMTP_DIR/tls" \
    "MEDIC_TEST_SMTPS_PORT=$SMTPS_PORT" \
    "MEDIC_TEST_SMTPS_DIR=$SMTP_DIR/smtps" \
    "MEDIC_TEST_SMTP_CA=$TLS/ca.pem" \
    "MEDIC_TEST_SMTP_TLS_CERT=$TLS/server.pem" \
    "MEDIC_TEST_SMTP_TLS_KEY=$TLS/server.key" \
    "MEDIC_TEST_SMTP_USER=$SMTP_USER" \
    "MEDIC_TEST_SMTP_PASSWORD=$SMTP_PASSWORD" \
    "MEDIC_TEST_SMTP_SCRIPT=$SMTP_SCRIPT" \
    "MEDIC_TEST_BUSYBOX_IMAGE=$BUSYBOX_IMAGE" \
    "MEDIC_TEST_PYTHON=$VENV/bin/python"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

cmd_status() {
  local ok=0
  say() { printf '%-14s %s\n' "$1" "$2"; }
  if docker info >/dev/null 2>&1; then say docker "up"; else say docker "DOWN"; ok=1; fi
  if docker image inspect "$BUSYBOX_IMAGE" >/dev/null 2>&1; then say busybox-image "present"; else say busybox-image "MISSING"; ok=1; fi
  if command -v podman >/dev/null 2>&1 && podman image exists "$BUSYBOX_IMAGE" 2>/dev/null; then
    say podman "installed, image present"
  else
    say podman "MISSING"
    ok=1
  fi
  if command -v rabbitmqctl >/dev/null 2>&1 && port_open "$RABBITMQ_PORT" && rabbit_running; then
    say rabbitmq "up on $RABBITMQ_PORT"
  else
    say rabbitmq "DOWN"
    ok=1
  fi
  local name port
  for name in mongodb:$MONGODB_PORT smtp:$SMTP_PORT smtp-tls:$SMTP_TLS_PORT smtps:$SMTPS_PORT; do
    port="${name#*:}"
    name="${name%%:*}"
    if service_pid "$name" >/dev/null && port_open "$port"; then say "$name" "up on $port"; else say "$name" "DOWN"; ok=1; fi
  done
  return $ok
}

# Containers, networks and volumes that tests labelled medic.test=true and left behind.
cmd_prune() {
  local ids
  mapfile -t ids < <(docker ps -aq --filter label=medic.test=true)
  ((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null
  mapfile -t ids < <(docker network ls -q --filter label=medic.test=true)
  ((${#ids[@]} == 0)) || docker network rm "${ids[@]}" >/dev/null
  mapfile -t ids < <(docker volume ls -q --filter label=medic.test=true)
  ((${#ids[@]} == 0)) || docker volume rm "${ids[@]}" >/dev/null
  # tests/podman.rs's containers, if a run was killed before it cleaned up.
  if command -v podman >/dev/null 2>&1; then
    mapfile -t ids < <(podman ps -aq --filter label=medic.test=true)
    ((${#ids[@]} == 0)) || podman rm -f -t 0 "${ids[@]}" >/dev/null
  fi
  log "prune: removed what carried label medic.test=true (images kept)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  prune) cmd_prune ;;
  podman) mkdir -p "$LOGS" "$PIDS"; ensure_podman ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
