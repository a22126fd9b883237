#!/usr/bin/env bash
# Runs Chunkstream locally: installs what is missing, starts LocalStack (S3 + SQS),
# builds the web pages and the runner, provisions the bucket and queues, and
# serves API + web + worker poller on http://127.0.0.1:8080 (CHUNKSTREAM_LISTEN).
# Ctrl-C stops the runner; `localstack/stop.sh` stops LocalStack.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh

bash scripts/setup.sh
bash localstack/start.sh
if [ -f web/package.json ]; then
  (cd web && npm run --silent build)
fi
cargo build --quiet -p chunkstream-runner
export CHUNKSTREAM_WEB_DIR="${CHUNKSTREAM_WEB_DIR:-$root/web/dist}"
exec "$root/target/debug/runner"
