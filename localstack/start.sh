#!/usr/bin/env bash
# Start LocalStack (S3, SQS, CloudFormation) natively from localstack/.venv, in the background.
# CloudFormation deploys infra/storage.yaml (bucket + queues); LocalStack's free
# edition has no native Lambda, API Gateway v2 or CloudFront, so the local runner
# plays those parts.
#
# Idempotent: if something on 127.0.0.1:4566 already reports s3, sqs and cloudformation as
# available/running in /_localstack/health, this does nothing and exits 0
# (that also covers the Docker path: `docker compose up -d` in this folder).
#
#   pid  -> localstack/data/localstack.pid
#   log  -> localstack/data/localstack.log
#   state/tmp -> localstack/data/filesystem/ (wiped by LocalStack on every start/stop;
#                nothing is persisted: a restart means empty buckets and queues)
#
# Env knobs: LOCALSTACK_START_TIMEOUT (seconds, default 120), AWS_ENDPOINT_URL (port).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="$here/data"
venv="$here/.venv"
pidfile="$data/localstack.pid"
logfile="$data/localstack.log"
# Another port than 4566 (e.g. a second LocalStack beside a shared one): set
# AWS_ENDPOINT_URL=http://127.0.0.1:PORT, as scripts/env.sh reads it too.
endpoint="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
port="${endpoint##*:}"; port="${port%%/*}"
timeout="${LOCALSTACK_START_TIMEOUT:-120}"

log() { printf '[localstack] %s\n' "$*" >&2; }

services=(s3 sqs cloudformation)

# Succeeds when health reports every service in $services as available or running.
health() {
  local body s
  body="$(curl -fsS --max-time 2 "$endpoint/_localstack/health" 2>/dev/null)" || return 1
  for s in "${services[@]}"; do
    grep -Eq "\"$s\": *\"(available|running)\"" <<<"$body" || return 1
  done
}

ours_alive() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'
}

if health; then
  log "already running and healthy at $endpoint (${services[*]})"
  exit 0
fi

if ! ours_alive; then
  rm -f "$pidfile"
  if curl -sS --max-time 2 -o /dev/null "$endpoint/" 2>/dev/null; then
    log "something else answers on $endpoint but its health does not show ${services[*]} ready"
    log "(a LocalStack started before cloudformation was added?): stop it with localstack/stop.sh"
    log "(or 'docker compose down' in localstack/) and retry"
    exit 1
  fi
  if ! "$venv/bin/python" -c 'import localstack' 2>/dev/null; then
    log "no LocalStack venv at $venv; run scripts/setup.sh first"
    exit 1
  fi

  mkdir -p "$data/filesystem"
  [ -f "$logfile" ] && mv -f "$logfile" "$logfile.1"

  # Notes on the environment (LocalStack 4.13.1 running outside its image):
  # * S3_SKIP_SIGNATURE_VALIDATION=0: LocalStack's default is to accept ANY presigned
  #   URL (tampered, expired, wrong key). Presign with access key "test"/secret "test"
  #   (any key id works, the secret must be "test").
  # * OVERRIDE_IN_DOCKER=0 + FILESYSTEM_ROOT: LocalStack guesses "am I in Docker?"
  #   (e.g. from /.dockerenv); when it guesses yes it writes to /var/lib/localstack and
  #   /tmp/localstack. Forcing host mode keeps everything under localstack/data/.
  #   (S3 object bodies still go to the hardcoded /tmp/localstack-s3-storage.)
  # * DNS_ADDRESS=0: otherwise it tries to run a DNS server on port 53 and, when it
  #   believes it is in Docker, to rewrite /etc/resolv.conf.
  # * SKIP_SSL_CERT_DOWNLOAD=1, DISABLE_EVENTS=1: no calls home (cert download, analytics).
  # * GATEWAY_LISTEN=127.0.0.1:4566 is honoured by the resolved config, but the default
  #   twisted gateway binds all interfaces (0.0.0.0:4566) anyway.
  log "starting LocalStack (log: $logfile)"
  (
    cd "$data"
    exec env \
      SERVICES="$(IFS=,; echo "${services[*]}")" \
      GATEWAY_LISTEN="127.0.0.1:$port" \
      LOCALSTACK_HOST="127.0.0.1:$port" \
      SQS_ENDPOINT_STRATEGY=path \
      S3_SKIP_SIGNATURE_VALIDATION=0 \
      EAGER_SERVICE_LOADING=1 \
      OVERRIDE_IN_DOCKER=0 \
      FILESYSTEM_ROOT="$data/filesystem" \
      DNS_ADDRESS=0 \
      SKIP_SSL_CERT_DOWNLOAD=1 \
      DISABLE_EVENTS=1 \
      setsid "$venv/bin/python" -m localstack.runtime.main </dev/null >"$logfile" 2>&1
  ) &
  echo $! >"$pidfile"
else
  log "LocalStack already starting (pid $(cat "$pidfile")), waiting for it"
fi

start=$SECONDS
until health; do
  if ! ours_alive; then
    log "LocalStack exited during startup; last log lines:"
    tail -n 40 "$logfile" >&2 || true
    rm -f "$pidfile"
    exit 1
  fi
  if (( SECONDS - start >= timeout )); then
    log "not healthy after ${timeout}s; last log lines:"
    tail -n 40 "$logfile" >&2 || true
    exit 1
  fi
  sleep 0.5
done
log "ready at $endpoint after $((SECONDS - start))s (pid $(cat "$pidfile"))"
