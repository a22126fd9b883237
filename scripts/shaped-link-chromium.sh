#!/usr/bin/env bash
# Chromium inside the shaped-link namespace (scripts/shaped-link.sh): playwright-core launches this
# as its executablePath; `ip netns exec` keeps the pipe file descriptors playwright talks over.
exec ip netns exec "${CHUNKSTREAM_NETNS:-chunkstream-bench}" "${CHROMIUM_PATH:-/usr/bin/chromium}" "$@"
