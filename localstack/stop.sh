#!/usr/bin/env bash
# Stop the LocalStack started by localstack/start.sh (only that process, by its pid).
# Nothing is persisted: the next start begins with no buckets and no queues.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pidfile="$here/data/localstack.pid"

log() { printf '[localstack] %s\n' "$*" >&2; }

is_ours() {
  kill -0 "$1" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main'
}

if [ ! -f "$pidfile" ]; then
  if curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:4566/_localstack/health 2>/dev/null; then
    log "no pid file, but something answers on 127.0.0.1:4566 (Docker? 'docker compose down' in localstack/)"
  else
    log "not running"
  fi
  exit 0
fi

pid="$(cat "$pidfile")"
if [ -z "$pid" ] || ! is_ours "$pid"; then
  log "stale pid file (pid '${pid}' is not LocalStack); removing it"
  rm -f "$pidfile"
  exit 0
fi

log "stopping LocalStack (pid $pid)"
kill -TERM "$pid"
for _ in $(seq 1 60); do   # LocalStack usually exits within ~2 s of SIGTERM
  is_ours "$pid" || { rm -f "$pidfile"; log "stopped"; exit 0; }
  sleep 0.5
done
log "still alive after 30 s; sending SIGKILL"
kill -KILL "$pid" 2>/dev/null || true
sleep 0.5
rm -f "$pidfile"
log "killed"
