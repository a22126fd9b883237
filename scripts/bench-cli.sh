#!/usr/bin/env bash
# CLI benchmarks (docs/benchmarks.md, "CLI"): makes its media at run time (nothing is
# committed), then measures
#  - segmentation throughput vs a raw sequential read of the same file (same run, warm cache);
#  - peak RSS for a 3-hour file (analysis + plan + building every part, in its own process);
#  - time to the share link for a ~4 GB moov-at-end file against the local runner on
#    LocalStack, with the stage breakdown and the baseline of one HTTP round trip to the API.
# Usage: bash scripts/bench-cli.sh [--quick]   (--quick: ~1 GB instead of ~4 GB)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
quick=0; [ "${1:-}" = "--quick" ] && quick=1
work="${BENCH_DIR:-$(mktemp -d /tmp/chunkstream-cli-bench.XXXXXX)}"
port="${CHUNKSTREAM_BENCH_PORT:-8102}"
name="${CHUNKSTREAM_E2E_NAME:-chunkstream-bench-cli}"
keep="${BENCH_DIR:+1}"
trap '[ -n "${runner_pid:-}" ] && kill "$runner_pid" 2>/dev/null; [ -z "$keep" ] && rm -rf "$work"' EXIT

echo "media in $work" >&2
if [ ! -s "$work/three-hours.mp4" ]; then  # BENCH_DIR with the media already made: reuse it
# one minute of 720p30 H.264 (~8 Mbit/s, B-frames) + AAC; longer files loop it without re-encoding
ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=sample_rate=48000 -t 60 \
  -c:v libx264 -preset ultrafast -b:v 8M -g 60 -bf 2 -c:a aac "$work/minute.mp4"
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=sample_rate=48000 -t 60 \
  -c:v libx264 -preset ultrafast -b:v 300k -g 60 -bf 2 -c:a aac "$work/minute-small.mp4"
loops=$([ "$quick" = 1 ] && echo 15 || echo 62)
ffmpeg -v error -y -stream_loop "$loops" -i "$work/minute.mp4" -c copy "$work/big-moov-at-end.mp4"
ffmpeg -v error -y -stream_loop 179 -i "$work/minute-small.mp4" -c copy "$work/three-hours.mp4"
fi

cargo build -q --profile bench -p chunkstream-cli   # same artifacts as the bench below (target/release)
nice cargo bench -q -p chunkstream-cli --bench segmenting -- "$work/big-moov-at-end.mp4"
nice cargo bench -q -p chunkstream-cli --bench segmenting -- "$work/three-hours.mp4"

cargo build -q -p chunkstream-runner
CHUNKSTREAM_LISTEN="127.0.0.1:$port" CHUNKSTREAM_BUCKET="$name" CHUNKSTREAM_QUEUE_PREFIX="$name" \
  CHUNKSTREAM_WEB_DIR="$root/web/dist" target/debug/runner > "$work/runner.log" 2>&1 &
runner_pid=$!
for _ in $(seq 1 100); do curl -fsS --max-time 1 "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break; sleep 0.2; done
for i in 1 2 3 4 5; do
  rt=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/api/health")
  # the link event comes first; the upload itself is not part of this figure: stop it there
  out="$work/link-$i.json"; : > "$out"
  CHUNKSTREAM_STATE_DIR="$work/state-$i" target/release/chunkstream upload --json \
    --api "http://127.0.0.1:$port" "$work/big-moov-at-end.mp4" > "$out" &
  up=$!
  for _ in $(seq 1 600); do [ -s "$out" ] && break; sleep 0.05; done
  kill "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true
  link=$(head -1 "$out")
  echo "time_to_link run=$i api_round_trip_ms=$(awk "BEGIN{print $rt*1000}") $link"
done
