#!/usr/bin/env bash
# An honest uplink for benchmarks (issue 7): a network namespace joined to this machine by a
# veth pair, its uplink (the namespace's egress) shaped by the kernel with `tc qdisc … tbf`
# — a token bucket with a bounded queue, like a modem — so that what runs inside (Chromium with
# the uploader page, curl) sends through a real bottleneck below the application. The runner and
# LocalStack stay outside, listening on the host end of the pair ($CHUNKSTREAM_LINK_HOST_IP).
#
#   scripts/shaped-link.sh up RATE_MBIT [QUEUE_MS]   create (or re-shape) the link; QUEUE_MS: queue bound (default 50)
#   scripts/shaped-link.sh rate RATE_MBIT [QUEUE_MS] change the rate of a link that is up
#   scripts/shaped-link.sh check [MB]                measure the achieved rate: one raw PUT of MB (default 8) random bytes through the link
#   scripts/shaped-link.sh exec CMD...               run CMD inside the namespace
#   scripts/shaped-link.sh show                      qdisc statistics
#   scripts/shaped-link.sh idle [MAX_S]              wait (≤ MAX_S, default 120) until nothing is queued or sent for 0.5 s
#   scripts/shaped-link.sh down                      remove the namespace (and with it the veth pair and the qdisc)
#
# Delay: netem is not in this kernel. The benchmark adds the link's latency on top in the
# browser (CDP Network.emulateNetworkConditions with latency only, no throughput limit), see
# web/bench/README.md. Only the uplink is shaped (downlink: veth speed); nothing is routed beyond
# the pair: the namespace has no default route, so its traffic only reaches this machine.
#
# Names: CHUNKSTREAM_NETNS (default chunkstream-bench), veth csb-host / csb-ns,
# 10.81.5.1 (host) / 10.81.5.2 (namespace). Needs root (ip, tc).
set -euo pipefail
ns="${CHUNKSTREAM_NETNS:-chunkstream-bench}"
host_if="${CHUNKSTREAM_LINK_HOST_IF:-csb-host}"
ns_if="${CHUNKSTREAM_LINK_NS_IF:-csb-ns}"
host_ip="${CHUNKSTREAM_LINK_HOST_IP:-10.81.5.1}"
ns_ip="${CHUNKSTREAM_LINK_NS_IP:-10.81.5.2}"
log() { printf '[shaped-link] %s\n' "$*" >&2; }

# The burst: 10 ms of traffic, at least 4 full-size frames. Measured with `check` (4 MB PUT):
# 7.64-7.68 Mbit/s of payload at 8mbit for bursts of 4-20 KB, i.e. the configured rate on the
# wire less TCP/IP/Ethernet headers (1448 of 1514 bytes); the burst hardly matters. (A 4 MB curl
# PUT "at ~6.2 Mbit/s" is curl waiting 1 s for `100 Continue`: `check` sends no Expect header.)
burst_bytes() { # rate_mbit
  awk -v r="$1" 'BEGIN { b = r * 1e6 / 8 * 0.010; if (b < 6056) b = 6056; printf "%d", b }'
}
# the queue bound: QUEUE_MS of traffic at the link rate plus the burst (tbf's `limit`)
limit_bytes() { # rate_mbit queue_ms burst
  awk -v r="$1" -v q="$2" -v b="$3" 'BEGIN { l = r * 1e6 / 8 * q / 1000; if (l < 3 * 1514) l = 3 * 1514; printf "%d", l + b }'
}

shape() { # rate_mbit queue_ms
  local rate="$1" queue_ms="${2:-50}" burst limit
  burst="$(burst_bytes "$rate")"
  limit="$(limit_bytes "$rate" "$queue_ms" "$burst")"
  ip netns exec "$ns" tc qdisc replace dev "$ns_if" root tbf rate "${rate}mbit" burst "$burst" limit "$limit"
  log "uplink $ns_if: tbf rate ${rate}mbit burst ${burst}B limit ${limit}B (~${queue_ms} ms queue)"
}

exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns"; }

up() {
  local rate="${1:?usage: up RATE_MBIT [QUEUE_MS]}" queue_ms="${2:-50}"
  if ! exists; then
    ip netns add "$ns"
    ip link add "$host_if" type veth peer name "$ns_if" netns "$ns"
    ip addr add "$host_ip/24" dev "$host_if"
    ip link set "$host_if" up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" ip addr add "$ns_ip/24" dev "$ns_if"
    ip netns exec "$ns" ip link set lo up
    # one MSS per packet: a 64 KB GSO burst is larger than a small tbf queue and would be
    # tail-dropped in part every time (2 Mbit/s, 50 ms: 18 KB) — a modem sees packets, not GSO
    ip netns exec "$ns" ip link set "$ns_if" gso_max_size 1514 gso_max_segs 1 2>/dev/null \
      || log "could not limit GSO on $ns_if (older iproute2): expect more drops on small queues"
    ip netns exec "$ns" ip link set "$ns_if" up
    log "namespace $ns up: $ns_ip ($ns_if) ↔ $host_ip ($host_if)"
  fi
  shape "$rate" "$queue_ms"
  # both ends up before anything uses the link (bounded wait; no ping on these machines)
  for _ in $(seq 1 50); do
    [ "$(cat "/sys/class/net/$host_if/operstate" 2>/dev/null)" = up ] \
      && ip netns exec "$ns" grep -qx up "/sys/class/net/$ns_if/operstate" && return 0
    sleep 0.1
  done
  log "the veth pair did not come up"; return 1
}

down() {
  if exists; then ip netns del "$ns"; log "namespace $ns removed"; fi
  # the host end goes with its peer; remove it if a half-made link left it behind
  ip link del "$host_if" 2>/dev/null || true
}

check() { # raw PUT of MB random bytes through the link to a sink on the host end; prints Mbit/s
  local mb="${1:-8}" dir port="${CHUNKSTREAM_LINK_CHECK_PORT:-8108}" sink result
  exists || { log "link is not up"; return 1; }
  dir="$(mktemp -d)"
  head -c "$((mb * 1024 * 1024))" /dev/urandom > "$dir/body"
  # a sink that reads and drops PUT bodies (python's stdlib), stopped below
  python3 -u - "$host_ip" "$port" > "$dir/sink.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        n = int(self.headers.get("content-length", 0))
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk: break
            n -= len(chunk)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
s.serve_forever()
PY
  sink=$!
  for _ in $(seq 1 100); do grep -q ready "$dir/sink.log" 2>/dev/null && break; sleep 0.05; done
  result="$(ip netns exec "$ns" curl -sS --max-time 300 -H 'Expect:' -o /dev/null -T "$dir/body" \
    -w '%{size_upload} %{time_total}' "http://$host_ip:$port/check" || echo "0 1")"
  kill "$sink" 2>/dev/null || true
  wait "$sink" 2>/dev/null || true
  rm -rf "$dir"
  awk -v l="$result" 'BEGIN { split(l, a, " "); printf "%.3f Mbit/s (%d bytes in %.2f s)\n", a[1] * 8 / a[2] / 1e6, a[1], a[2] }'
}

sent_bytes() { ip netns exec "$ns" tc -s qdisc show dev "$ns_if" | awk '/Sent/ { print $2; exit }'; }

# Sockets closed with unsent data (a closed page's PUTs) keep draining through the queue: the next
# measurement starts on a quiet link.
idle() { # max_s
  local max="${1:-120}" start=$SECONDS a b
  exists || return 0
  a="$(sent_bytes)"
  while (( SECONDS - start < max )); do
    sleep 0.5
    b="$(sent_bytes)"
    [ "$a" = "$b" ] && return 0
    a="$b"
  done
  log "link still busy after ${max}s"; return 1
}

cmd="${1:-}"; shift || true
case "$cmd" in
  up) up "$@" ;;
  rate) exists || { log "link is not up"; exit 1; }; shape "$@" ;;
  check) check "$@" ;;
  exec) exec ip netns exec "$ns" "$@" ;;
  show) ip netns exec "$ns" tc -s qdisc show dev "$ns_if" ;;
  idle) idle "$@" ;;
  down) down ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
