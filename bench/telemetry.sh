#!/usr/bin/env bash
# The cost of telemetry: hello on `virga serve` exporting spans, metrics and logs over
# OTLP/gRPC to a receiver on loopback, next to the same host exporting nothing, in the same
# run (alternately, twice each) with wrk. Prints the export-on share of export-off's
# requests/s, the host's CPU time per request in each mode (the share of the cost that is
# the host's, not the receiver's on the same cores), and what the receiver got (so the
# export is known to be real).
#
#   bench/telemetry.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-64}"
cargo build --release --quiet -p virga --example otlp_sink

on_port=18080
off_port=18082
sink_port=18417
state=$(mktemp -d)
mkdir -p "$state/on" "$state/off"
{ server_toml "$on_port" "$state/on"; hello_toml "*/*"; cat <<TOML
[telemetry]
otlp_endpoint = "http://127.0.0.1:$sink_port"
otlp_protocol = "grpc"
TOML
} > "$state/on/virga.toml"
{ server_toml "$off_port" "$state/off"; hello_toml "*/*"; } > "$state/off/virga.toml"
target/release/examples/otlp_sink 127.0.0.1:$sink_port > "$state/sink.log" &
sink_pid=$!
# Host logs at warn: the export is what is measured, not stderr.
RUST_LOG=warn target/release/virga serve --config "$state/on/virga.toml" >/dev/null 2>&1 &
on_pid=$!
RUST_LOG=warn OTEL_SDK_DISABLED=true target/release/virga serve --config "$state/off/virga.toml" >/dev/null 2>&1 &
off_pid=$!
trap 'kill $on_pid $off_pid $sink_pid 2>/dev/null || true; rm -rf "$state"' EXIT
for port in $on_port $off_port; do wait_for "http://127.0.0.1:$port/x"; done

# cpu PID: the process's user+system CPU time so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run NAME PORT PID: measures, and prints the host's CPU per request alongside.
run() {
  local before after rps
  before=$(cpu "$3")
  rps=$(measure "$1" "http://127.0.0.1:$2/x")
  after=$(cpu "$3")
  python3 -c "import sys; b,a,r,s,hz=map(float,sys.argv[1:6]); print(f'{sys.argv[6]:<16} host CPU {(a-b)/hz/(r*s)*1e6:6.1f} us/request', file=sys.stderr)" \
    "$before" "$after" "$rps" "$secs" "$hz" "$1"
  echo "$rps"
}

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive, GET /x (hello sample)" >&2
sink_before=$(cpu $sink_pid)
off1=$(run export-off $off_port $off_pid)
on1=$(run export-on $on_port $on_pid)
off2=$(run export-off $off_port $off_pid)
on2=$(run export-on $on_port $on_pid)
sink_after=$(cpu $sink_pid)
sleep 2
echo "receiver: $(tail -1 "$state/sink.log")" >&2
echo "receiver CPU during the runs: $(( (sink_after - sink_before) * 1000 / hz )) ms" >&2
python3 - "$off1" "$on1" "$off2" "$on2" <<'PY'
import sys
f1, n1, f2, n2 = map(float, sys.argv[1:])
print(f"export on / export off: {(n1 + n2) / (f1 + f2):.1%} of the requests/s "
      f"(runs: {n1 / f1:.1%}, {n2 / f2:.1%})")
PY
