#!/usr/bin/env bash
# The benchmark suite (issue 4): backend figures (Rust, LocalStack) and browser
# figures (real Chromium against the local runner). Prints a table and writes it,
# with a description of this machine, to docs/benchmarks.md.
# A benchmark, not a test: every figure is reported with a baseline measured in
# the same run; nothing fails on a slow machine.  --quick: shorter variants.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)
out="$root/target/bench"
mkdir -p "$out"
rm -f "$out"/*.json

bash scripts/setup.sh
bash localstack/start.sh

echo "=== backend benchmarks (cargo bench)" >&2
cargo bench --quiet -p chunkstream --bench backend -- "${quick[@]}" --out "$out/backend.json"

if [ -f web/bench/run.ts ]; then
  echo "=== browser benchmarks (Chromium)" >&2
  (cd web && npm run --silent build)
  cargo build --quiet -p chunkstream-runner
  port="${CHUNKSTREAM_BENCH_PORT:-8097}"
  CHUNKSTREAM_LISTEN="127.0.0.1:$port" CHUNKSTREAM_WEB_DIR="$root/web/dist" \
    CHUNKSTREAM_BUCKET="chunkstream-bench" CHUNKSTREAM_QUEUE_PREFIX="chunkstream-bench" \
    "$root/target/debug/runner" > "$out/runner.log" 2>&1 &
  runner_pid=$!
  trap 'kill $runner_pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -fsS --max-time 1 "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  (cd web && CHUNKSTREAM_URL="http://127.0.0.1:$port" node --import tsx bench/run.ts "${quick[@]}" --out "$out/web.json")
fi

python3 scripts/bench_report.py "$out" docs/benchmarks.md
cat docs/benchmarks.md
