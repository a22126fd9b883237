#!/usr/bin/env bash
# CLI benchmarks (docs/benchmarks.md, "CLI"): makes its media at run time (nothing is
# committed), then measures
#  - segmentation throughput vs a raw sequential read of the same file (same run, warm cache);
#  - peak RSS for a 3-hour file (analysis + plan + building every part, in its own process);
#  - time to the share link for a ~4 GB moov-at-end file against the local runner on
#    LocalStack, with the stage breakdown and the baseline of one HTTP round trip to the API;
#  - with --shaped-link (root: ip netns, tc): goodput of `chunkstream upload` for a ~40 MB file
#    over the kernel-shaped uplink of scripts/shaped-link.sh (tbf, default 8 Mbit/s), against a
#    raw PUT stream of the same file's bytes to the same S3 (LocalStack) through the same link,
#    measured before and after the CLI in the same run.
# Usage: bash scripts/bench-cli.sh [--quick] [--shaped-link | --shaped-link-only]
#   --quick              ~1 GB instead of ~4 GB for the time-to-link file
#   --shaped-link        add the shaped-link goodput figure (CHUNKSTREAM_BENCH_RATE_MBIT, default 8)
#   --shaped-link-only   only that figure
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
quick=0 shaped=0 local_figures=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --shaped-link) shaped=1 ;;
    --shaped-link-only) shaped=1; local_figures=0 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
if [ "$shaped" = 1 ] && [ "$(id -u)" != 0 ]; then
  echo "--shaped-link needs root (ip netns, tc): run as root or drop the flag" >&2; exit 2
fi
work="${BENCH_DIR:-$(mktemp -d /tmp/chunkstream-cli-bench.XXXXXX)}"
port="${CHUNKSTREAM_BENCH_PORT:-8102}"
name="${CHUNKSTREAM_E2E_NAME:-chunkstream-bench-cli}"
keep="${BENCH_DIR:+1}"
cleanup() {
  [ -n "${runner_pid:-}" ] && kill "$runner_pid" 2>/dev/null
  [ -n "${shaped_runner_pid:-}" ] && kill "$shaped_runner_pid" 2>/dev/null
  [ "$shaped" = 1 ] && bash scripts/shaped-link.sh down
  [ -z "$keep" ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

make_minute() { # one minute of 720p30 H.264 (~8 Mbit/s, B-frames) + AAC; longer files loop it
  [ -s "$work/minute.mp4" ] && return 0
  ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=sample_rate=48000 -t 60 \
    -c:v libx264 -preset ultrafast -b:v 8M -g 60 -bf 2 -c:a aac "$work/minute.mp4"
}

echo "media in $work" >&2
cargo build -q --profile bench -p chunkstream-cli   # same artifacts as the bench below (target/release)
# the server side of the time to link is measured optimised, as deployed (not a debug build)
cargo build -q --profile bench -p chunkstream-runner
if [ "$local_figures" = 1 ]; then
if [ ! -s "$work/three-hours.mp4" ]; then  # BENCH_DIR with the media already made: reuse it
make_minute
ffmpeg -v error -y -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=sample_rate=48000 -t 60 \
  -c:v libx264 -preset ultrafast -b:v 300k -g 60 -bf 2 -c:a aac "$work/minute-small.mp4"
loops=$([ "$quick" = 1 ] && echo 15 || echo 62)
ffmpeg -v error -y -stream_loop "$loops" -i "$work/minute.mp4" -c copy "$work/big-moov-at-end.mp4"
ffmpeg -v error -y -stream_loop 179 -i "$work/minute-small.mp4" -c copy "$work/three-hours.mp4"
fi

nice cargo bench -q -p chunkstream-cli --bench segmenting -- "$work/big-moov-at-end.mp4"
nice cargo bench -q -p chunkstream-cli --bench segmenting -- "$work/three-hours.mp4"

# open mode: the uploads below carry no key (the runner requires keys by default); every run
# leaves its upload live (stopped at the link) under the one open-mode owner, so the live-session
# quota is lifted (a create's cost does not depend on how many are live)
CHUNKSTREAM_AUTH=open CHUNKSTREAM_QUOTA_LIVE_SESSIONS=100000 CHUNKSTREAM_LISTEN="127.0.0.1:$port" CHUNKSTREAM_BUCKET="$name" CHUNKSTREAM_QUEUE_PREFIX="$name" \
  CHUNKSTREAM_WEB_DIR="$root/web/dist" target/release/runner > "$work/runner.log" 2>&1 &
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
kill "$runner_pid" 2>/dev/null || true; wait "$runner_pid" 2>/dev/null || true; runner_pid=""
fi

if [ "$shaped" = 1 ]; then
  rate="${CHUNKSTREAM_BENCH_RATE_MBIT:-8}"
  link_ip="${CHUNKSTREAM_LINK_HOST_IP:-10.81.5.1}"
  sport="${CHUNKSTREAM_BENCH_SHAPED_PORT:-8103}"
  s3_port="${AWS_ENDPOINT_URL##*:}"; s3_port="${s3_port%%/*}"
  bucket="$name-shaped"
  make_minute
  # ~40 MB: the first 40 s of the 8 Mbit/s minute (moov at the end, B-frames), no re-encoding
  [ -s "$work/forty.mp4" ] || ffmpeg -v error -y -i "$work/minute.mp4" -t 40 -c copy "$work/forty.mp4"
  file_bytes=$(stat -c %s "$work/forty.mp4")
  bash scripts/shaped-link.sh up "$rate"
  # the runner and LocalStack stay on the host, on the host end of the pair: the CLI's API calls
  # and its presigned PUTs both cross the shaped uplink (as a raw PUT's bytes do)
  CHUNKSTREAM_AUTH=open CHUNKSTREAM_LISTEN="$link_ip:$sport" CHUNKSTREAM_PUBLIC_BASE_URL="http://$link_ip:$sport" \
    CHUNKSTREAM_S3_PUBLIC_ENDPOINT="http://$link_ip:$s3_port" \
    CHUNKSTREAM_BUCKET="$bucket" CHUNKSTREAM_QUEUE_PREFIX="$bucket" CHUNKSTREAM_WEB_DIR="$root/web/dist" \
    target/release/runner > "$work/shaped-runner.log" 2>&1 &
  shaped_runner_pid=$!
  for _ in $(seq 1 150); do curl -fsS --max-time 1 "http://$link_ip:$sport/api/health" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "shaped_link_check $(bash scripts/shaped-link.sh check 8)"
  raw_put() { # one PUT of the whole file to the bucket through the link; prints "bytes seconds"
    bash scripts/shaped-link.sh idle 60
    bash scripts/shaped-link.sh exec curl -sS --max-time 600 -H 'Expect:' -o /dev/null -T "$work/forty.mp4" \
      -w '%{http_code} %{size_upload} %{time_total}\n' "http://$link_ip:$s3_port/$bucket/bench-raw-put-$1.mp4" \
      | awk '$1 != 200 { print "raw PUT answered " $1 > "/dev/stderr"; exit 1 } { print $2, $3 }'
  }
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  raw1=$(raw_put 1)
  bash scripts/shaped-link.sh idle 60
  sent0=$(ip netns exec "${CHUNKSTREAM_NETNS:-chunkstream-bench}" tc -s qdisc show dev "${CHUNKSTREAM_LINK_NS_IF:-csb-ns}" | awk '/Sent/ { print $2; exit }')
  t0=$(date +%s.%N)
  bash scripts/shaped-link.sh exec env CHUNKSTREAM_STATE_DIR="$work/shaped-state" \
    "$root/target/release/chunkstream" upload --json --api "http://$link_ip:$sport" "$work/forty.mp4" \
    > "$work/shaped-cli.jsonl"
  t1=$(date +%s.%N)
  sent1=$(ip netns exec "${CHUNKSTREAM_NETNS:-chunkstream-bench}" tc -s qdisc show dev "${CHUNKSTREAM_LINK_NS_IF:-csb-ns}" | awk '/Sent/ { print $2; exit }')
  raw2=$(raw_put 2)
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  for n in 1 2; do curl -fsS -o /dev/null -X DELETE "$AWS_ENDPOINT_URL/$bucket/bench-raw-put-$n.mp4" || true; done
  python3 - "$work/shaped-cli.jsonl" "$file_bytes" "$raw1" "$raw2" "$t0" "$t1" "$((sent1 - sent0))" \
    "$rate" "$load_before" "$load_after" "$(nproc)" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
first = lambda kind: next(e for e in events if e.get("event") == kind)
link, done = first("link"), first("done")
file_bytes = int(sys.argv[2])
raws = [tuple(map(float, r.split())) for r in (sys.argv[3], sys.argv[4])]
t0, t1, wire = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
mbit = lambda b, s: b * 8 / s / 1e6
raw_rates = [mbit(b, s) for b, s in raws]
wall = t1 - t0
upload_s = done["seconds"]
payload = done["bytes_uploaded"]
print(f"shaped_goodput rate_mbit={sys.argv[8]} file_bytes={file_bytes} parts={link['part_count']} "
      f"raw_put_mbit={raw_rates[0]:.2f},{raw_rates[1]:.2f} raw_put_s={raws[0][1]:.1f},{raws[1][1]:.1f} "
      f"cli_payload_bytes={payload} cli_ms_to_link={link['ms_to_link']} cli_upload_s={upload_s} cli_wall_s={wall:.1f} "
      f"cli_goodput_mbit={mbit(payload, upload_s):.2f} cli_file_goodput_wall_mbit={mbit(file_bytes, wall):.2f} "
      f"ratio_to_raw={mbit(payload, upload_s) / (sum(raw_rates) / 2):.3f} "
      f"wire_bytes_during_cli={wire} wire_overhead={wire / payload - 1:.3f} "
      f"load_before={sys.argv[9].replace(' ', '/')} load_after={sys.argv[10].replace(' ', '/')} cores={sys.argv[11]}")
PY
  # the benchmark's video goes again (through the CLI's own delete)
  vid=$(python3 -c 'import json,sys; print(next(e["video_id"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "link"))' "$work/shaped-cli.jsonl")
  target/release/chunkstream delete "$vid" --yes --api "http://$link_ip:$sport" || true
fi
