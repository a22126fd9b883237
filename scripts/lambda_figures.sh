#!/usr/bin/env bash
# Lambda figures (issue 9, item 6): bootstrap sizes of both functions built with
# the deploy profile ([profile.release]: opt-level "z", fat LTO, one codegen unit, panic=abort, stripped), and
# cold-start init time of each bootstrap against a local Lambda runtime API
# (scripts/lambda_init.py; baseline: curl's first GET /next in the same run).
# The deploy build takes ~14 min on 2 cores: it runs at nice 15, once.
#   bash scripts/lambda_figures.sh [--runs N] [--no-build]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
export PATH="$root/.tools/bin:$PATH"
runs=20; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
# The deploy profile exactly: no CARGO_PROFILE_RELEASE_* overrides.
unset CARGO_PROFILE_RELEASE_LTO CARGO_PROFILE_RELEASE_OPT_LEVEL
if [ "$build" = 1 ]; then
  start=$SECONDS
  nice -n 15 cargo lambda build --release -p chunkstream-api -p chunkstream-worker
  mkdir -p "$root/target/lambda-figures"
  echo "Deploy-profile build of both functions: $((SECONDS - start)) s at nice 15." | tee "$root/target/lambda-figures/build.txt" >&2
fi
out="$root/target/lambda-figures"
mkdir -p "$out"
for f in api worker; do
  b="target/lambda/$f/bootstrap"
  test -x "$b" || { echo "missing $b (run without --no-build)" >&2; exit 1; }
  # What Lambda receives: the bootstrap zipped (sam deploy zips the build dir).
  rm -f "$out/$f.zip"
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED); z.write(sys.argv[2], "bootstrap"); z.close()' "$out/$f.zip" "$b"
  python3 -c 'import os, sys; b, z = (os.path.getsize(p) for p in sys.argv[2:]); print(f"{sys.argv[1]:7} bootstrap {b / 1e6:6.2f} MB ({b} bytes), zipped {z / 1e6:6.2f} MB")' \
    "$f" "$b" "$out/$f.zip"
done | tee "$out/sizes.txt"
python3 -c 'import json, os, sys; out = sys.argv[1]; json.dump([{"name": f, "bytes": os.path.getsize(f"target/lambda/{f}/bootstrap"), "zip_bytes": os.path.getsize(f"{out}/{f}.zip")} for f in ("api", "worker")], open(f"{out}/sizes.json", "w"))' "$out"
python3 scripts/lambda_init.py --api target/lambda/api/bootstrap --worker target/lambda/worker/bootstrap \
  --runs "$runs" --out "$out/init.json" | tee "$out/init.txt"
python3 scripts/lambda_report.py "$out" docs/benchmarks.md
echo "wrote docs/benchmarks.md, section 'Lambda functions (deploy profile)'" >&2
