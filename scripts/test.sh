#!/usr/bin/env bash
# Runs every test: formatting, lints, Rust unit and LocalStack integration tests,
# the Lambda release build, and the web unit + real-Chromium end-to-end tests.
# Installs what is missing and starts LocalStack itself if it is not running.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
# .tools/bin (cargo-lambda and its zig) before .tools/sam/bin (sam, cfn-lint).
export PATH="$root/.tools/bin:$root/.tools/sam/bin:$PATH"
export SAM_CLI_TELEMETRY=0

# Each step prints when it started (seconds into the run) and how long it took, so a slow
# or stuck step is visible in CI's log.
step() {
  local name="$1" start=$SECONDS
  shift
  printf '\n=== %s (at %ss)\n' "$name" "$start" >&2
  "$@"
  printf '=== %s: done in %ss\n' "$name" "$((SECONDS - start))" >&2
}
started_localstack=0
runner_pid=""
cleanup() {
  [ -n "$runner_pid" ] && kill "$runner_pid" 2>/dev/null || true
  [ "$started_localstack" = 1 ] && bash localstack/stop.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "set-up" bash scripts/setup.sh
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings

if ! curl -fsS --max-time 2 "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null 2>&1; then
  started_localstack=1
fi
step "LocalStack" bash localstack/start.sh

# the CLI's end-to-end tests (cli/tests) drive the real runner binary
# The CLI and Chromium end-to-end runs start the runner without API keys (the
# explicit open mode); credentials, quotas and the owner routes are tested in
# functions/service/tests/owner.rs, and through the CLI in cli/tests/localstack_owner.rs
# (its runners require keys whatever this says).
export CHUNKSTREAM_AUTH=open
# ...and without the live-session quota: in open mode every run shares one owner, and the
# suites leave uploads in progress on purpose (pause, resume, kill, stalls)
export CHUNKSTREAM_QUOTA_LIVE_SESSIONS=100000
step "runner build" cargo build --quiet -p chunkstream-runner
# bounded: a hung integration test fails the run with a message, not CI's time limit
step "Rust unit + LocalStack integration tests" timeout -k 30 2400 cargo test --workspace

step "cfn-lint (infra/)" cfn-lint infra/template.yaml infra/storage.yaml
step "sam validate --lint" bash -c 'cd infra && sam validate --lint'

if [ "${SKIP_LAMBDA_BUILD:-0}" != 1 ]; then
  # `sam build` runs SAM's rust-cargolambda builder for each function. The deploy
  # build (release profile: opt-level z, fat LTO, zig linker) takes ~15-20 min on
  # 2 cores; the check builds the same two binaries through the same builder in
  # SAM's debug mode (`cargo lambda build` without --release) with plain cargo as
  # the compiler, so it reuses the build scripts and proc macros `cargo test`
  # just compiled in target/ (see infra/README.md, "Build"). LAMBDA_FULL_PROFILE=1
  # builds exactly what gets deployed.
  if [ "${LAMBDA_FULL_PROFILE:-0}" != 1 ]; then
    export SAM_BUILD_MODE=debug CARGO_LAMBDA_COMPILER=cargo
  fi
  step "sam build (the Lambda functions)" bash -c 'cd infra && sam build'
  # Functions with the same code share one build directory (ApiFunction-Shared for the API
  # and the priority feed): follow each function's CodeUri in the built template.
  for f in ApiFunction PriorityFeedFunction WorkerFunction; do
    dir=$(awk -v f="  $f:" '$0 == f { found = 1 } found && /CodeUri:/ { print $2; exit }' infra/.aws-sam/build/template.yaml)
    test -n "$dir" && test -x "infra/.aws-sam/build/$dir/bootstrap" || { echo "no bootstrap for $f in infra/.aws-sam/build (CodeUri '$dir')" >&2; exit 1; }
  done
  unset SAM_BUILD_MODE CARGO_LAMBDA_COMPILER
fi

if [ -f web/package.json ]; then
  step "web typecheck" bash -c 'cd web && npm run --silent typecheck'
  step "web unit tests" bash -c 'cd web && npm test'
  step "web build" bash -c 'cd web && npm run --silent build'
  step "runner build" cargo build --quiet -p chunkstream-runner
  port="${CHUNKSTREAM_TEST_PORT:-8091}"
  export CHUNKSTREAM_URL="http://127.0.0.1:$port"
  CHUNKSTREAM_LISTEN="127.0.0.1:$port" CHUNKSTREAM_WEB_DIR="$root/web/dist" \
    CHUNKSTREAM_BUCKET="${CHUNKSTREAM_E2E_NAME:-chunkstream-e2e}" CHUNKSTREAM_QUEUE_PREFIX="${CHUNKSTREAM_E2E_NAME:-chunkstream-e2e}" \
    "$root/target/debug/runner" > "$root/target/e2e-runner.log" 2>&1 &
  runner_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS --max-time 1 "$CHUNKSTREAM_URL/api/health" >/dev/null 2>&1 && break
    kill -0 "$runner_pid" 2>/dev/null || { cat "$root/target/e2e-runner.log" >&2; exit 1; }
    sleep 0.2
  done
  export E2E_RUNNER_LOG="$root/target/e2e-runner.log"
  step "web end-to-end tests (Chromium)" bash -c 'cd web && npm run test:e2e'
fi
printf '\nAll tests passed.\n' >&2
