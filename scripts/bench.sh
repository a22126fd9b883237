#!/usr/bin/env bash
# The benchmark suite (issues 4 and 7): backend figures (Rust, LocalStack) and browser figures
# (real Chromium against the local runner, the uploader's uplink shaped below the application).
# Prints a table and writes it, with a description of this machine, to docs/benchmarks.md.
# A benchmark, not a test: every figure is reported with a baseline measured in the same run;
# nothing fails on a slow machine.
#
#   bash scripts/bench.sh [--quick] [--browser-only] [--link netns|cdp] [--only 0,1,1n,2,3,4,5,9] [--no-report]
#
# --quick         shorter variants (~15 min): one trial, fewer positions, no natural-order run
# --browser-only  skip `cargo bench` (figures 6-7 are then kept from the previous report, labelled)
# --no-report     print the figures only (docs/benchmarks.md untouched), for experiments
# Experiments: CHUNKSTREAM_BENCH_LINKS=8 (only these links, Mbit/s), CHUNKSTREAM_BENCH_NOISE=0
# (no noise-source seeks).
# --link netns    (default when root) the uploader's Chromium in a network namespace with a tbf
#                 uplink (scripts/shaped-link.sh); --link cdp: Chromium's own throttling (no root)
# Ports: CHUNKSTREAM_BENCH_PORT (runner, 8097), CHUNKSTREAM_BENCH_COUNTER_PORT (S3/SQS request
# counter, 8098), CHUNKSTREAM_LINK_CHECK_PORT (raw-PUT sink of the link check, 8099).
# Full run: ≤ 40 min on 2 cores (natural order at 8 Mbit/s alone is ~9 min); media cached in target/bench-media.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
quick=() only=() browser_only=0 link="" report=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --browser-only) browser_only=1 ;;
    --link) link="$2"; shift ;;
    --only) only=(--only "$2"); shift ;;
    --no-report) report=0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$link" ]; then
  if [ "$(id -u)" = 0 ] && command -v tc >/dev/null; then link=netns; else link=cdp; fi
fi
out="$root/target/bench"
mkdir -p "$out"
rm -f "$out"/*.json

bash scripts/setup.sh
bash localstack/start.sh

if [ "$browser_only" = 0 ]; then
  echo "=== backend benchmarks (cargo bench)" >&2
  cargo bench --quiet -p chunkstream --bench backend -- "${quick[@]}" --out "$out/backend.json"
fi

port="${CHUNKSTREAM_BENCH_PORT:-8097}"
counter_port="${CHUNKSTREAM_BENCH_COUNTER_PORT:-8098}"
export CHUNKSTREAM_LINK_CHECK_PORT="${CHUNKSTREAM_LINK_CHECK_PORT:-8099}"
name="${CHUNKSTREAM_BENCH_NAME:-chunkstream-bench}"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "$link" = netns ] && bash scripts/shaped-link.sh down || true
}
trap cleanup EXIT

echo "=== browser benchmarks (Chromium, link: $link)" >&2
(cd web && npm run --silent build)
# the runner as a product is measured optimised (the bench profile: release without LTO)
cargo build --quiet --profile bench -p chunkstream-runner
host_ip=127.0.0.1
if [ "$link" = netns ]; then
  bash scripts/shaped-link.sh up 8
  host_ip="${CHUNKSTREAM_LINK_HOST_IP:-10.81.5.1}"
fi
# every S3/SQS request (the runner's, and the browser's presigned PUTs) passes a counter in front
# of LocalStack (web/bench/s3-counter.ts); presigned URLs name it at an address the namespace reaches
listen_counter="127.0.0.1:$counter_port"
[ "$host_ip" != 127.0.0.1 ] && listen_counter="$listen_counter,$host_ip:$counter_port"
(cd web && exec node --import tsx bench/s3-counter.ts "$listen_counter" "$AWS_ENDPOINT_URL") > "$out/s3-counter.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS --max-time 1 "http://127.0.0.1:$counter_port/__counts" >/dev/null 2>&1 && break
  sleep 0.2
done
# open mode without the live-session quota: the pages carry no API key (the runner requires
# keys by default), and the seek runs leave uploads in progress on purpose
AWS_ENDPOINT_URL="http://127.0.0.1:$counter_port" \
  CHUNKSTREAM_AUTH=open CHUNKSTREAM_QUOTA_LIVE_SESSIONS=100000 \
  CHUNKSTREAM_S3_PUBLIC_ENDPOINT="http://$host_ip:$counter_port" \
  CHUNKSTREAM_LISTEN="$host_ip:$port" CHUNKSTREAM_PUBLIC_BASE_URL="http://$host_ip:$port" \
  CHUNKSTREAM_WEB_DIR="$root/web/dist" CHUNKSTREAM_BUCKET="$name" CHUNKSTREAM_QUEUE_PREFIX="$name" \
  "$root/target/release/runner" > "$out/runner.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fsS --max-time 1 "http://$host_ip:$port/api/health" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$out/runner.log" >&2; exit 1; }
  sleep 0.2
done
(cd web && CHUNKSTREAM_URL="http://$host_ip:$port" CHUNKSTREAM_LINK="$link" \
  CHUNKSTREAM_S3_COUNTER="http://127.0.0.1:$counter_port" CHUNKSTREAM_BENCH_BUCKET="$name" \
  CHUNKSTREAM_RUNNER_LOG="$out/runner.log" \
  node --import tsx bench/run.ts "${quick[@]}" "${only[@]}" --out "$out/web.json")

keep=()
[ "$browser_only" = 1 ] && keep=(--keep-missing 6,7)
if [ "$report" = 1 ]; then
  python3 scripts/bench_report.py "$out" docs/benchmarks.md "${keep[@]}"
  cat docs/benchmarks.md
fi
