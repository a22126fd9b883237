#!/usr/bin/env bash
# Installs everything Chunkstream needs beyond Rust, Python 3.11 and Node.
# Idempotent: each step checks before it installs. Safe to run on every start.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || [ "${SKIP_CHROMIUM:-0}" = 1 ] || need_apt+=(chromium)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# A WebKit engine (the Safari family) for web/e2e/webkit.test.ts: WebKitGTK's WebDriver and
# MiniBrowser on a virtual display, GStreamer's MP4 demuxer, H.264/AAC decoders and HLS
if [ "${SKIP_WEBKIT:-0}" != 1 ]; then
  for pkg in webkit2gtk-driver xvfb xauth dbus-x11 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$pkg")
  done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

venv="$root/localstack/.venv"
stamp="$venv/.installed-$(sha256sum localstack/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  log "creating LocalStack venv in localstack/.venv"
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r localstack/requirements.txt
  touch "$stamp"
fi

tools="$root/.tools"
if [ ! -x "$tools/bin/cargo-lambda" ]; then
  log "installing cargo-lambda into .tools (from PyPI)"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --upgrade pip
  "$tools/bin/pip" install -q cargo-lambda
fi

# SAM CLI + cfn-lint (infra/requirements.txt) in their own venv: sam pins its own
# boto3/botocore, which must not meet LocalStack's or cargo-lambda's.
sam_venv="$tools/sam"
sam_stamp="$sam_venv/.installed-$(sha256sum infra/requirements.txt | cut -c1-16)"
if [ ! -f "$sam_stamp" ]; then
  log "installing the SAM CLI and cfn-lint into .tools/sam (from PyPI)"
  python3.11 -m venv "$sam_venv" 2>/dev/null || python3 -m venv "$sam_venv"
  "$sam_venv/bin/pip" install -q --upgrade pip
  "$sam_venv/bin/pip" install -q -r infra/requirements.txt
  rm -f "$sam_venv"/.installed-*
  touch "$sam_stamp"
fi

if [ -f web/package.json ]; then
  if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    log "npm ci in web/"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
log "ok"
