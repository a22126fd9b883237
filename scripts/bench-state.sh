#!/usr/bin/env bash
# The state-under-load benchmark: LOAD_UPLOADERS uploaders × LOAD_PARTS parts and
# LOAD_VIEWERS viewers at once against the API over HTTP + the local poller, on
# LocalStack (defaults 20 × 100, 100 viewers). Prints p50/p99 per path, S3/SQS
# requests per part and per viewer-minute, and the cost per video-hour at
# us-east-1 list prices against the floor of one S3 PUT per track per part.
# Needs LocalStack running (bash localstack/start.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source scripts/env.sh
LOAD_UPLOADERS="${LOAD_UPLOADERS:-20}" LOAD_PARTS="${LOAD_PARTS:-100}" LOAD_VIEWERS="${LOAD_VIEWERS:-100}" \
  cargo test --quiet -p chunkstream --test load load_benchmark -- --ignored --nocapture 2>&1 |
  grep -v '^running\|^test result\|^$'
