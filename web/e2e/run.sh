#!/usr/bin/env bash
# Runs the end-to-end test files one at a time, each under a hard wall-clock limit, so a
# hang (a browser that never answers, a handle that keeps node alive) fails that file with
# a message instead of stalling the whole suite. Every file runs even when one fails.
#   E2E_FILE_LIMIT   seconds per file (default 480)
#   E2E_RUNNER_LOG   a log whose tail is printed when a file fails (scripts/test.sh sets it)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit="${E2E_FILE_LIMIT:-480}"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(e2e/*.test.ts)
failed=()
for f in "${files[@]}"; do
  start=$SECONDS
  # --test-force-exit: a leaked handle must not keep the file alive once its tests ended;
  # --test-timeout: a test without its own limit still ends (hooks are bounded by `timeout`)
  timeout -k 15 "$limit" node --import tsx --test --test-force-exit --test-timeout=300000 "$f"
  rc=$?
  took=$((SECONDS - start))
  if [ "$rc" = 0 ]; then
    printf '# %s passed in %ss\n' "$f" "$took" >&2
  else
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      printf '# %s did not finish within %ss: stopped\n' "$f" "$limit" >&2
    else
      printf '# %s failed (exit %s) after %ss\n' "$f" "$rc" "$took" >&2
    fi
    failed+=("$f")
    if [ -n "${E2E_RUNNER_LOG:-}" ] && [ -f "$E2E_RUNNER_LOG" ]; then
      printf '# last lines of %s:\n' "$E2E_RUNNER_LOG" >&2
      tail -n 60 "$E2E_RUNNER_LOG" | sed 's/^/#   /' >&2
    fi
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  printf '# end-to-end files that failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
