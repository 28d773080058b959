#!/usr/bin/env bash
# The cost of telemetry: hello on `virga serve` exporting spans, metrics and logs over
# OTLP/gRPC to a receiver on loopback, next to the same host exporting nothing, in the same
# run (alternately, twice each) with wrk. Prints the export-on share of export-off's
# requests/s, and how many spans the receiver got (so the export is known to be real).
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

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive, GET /x (hello sample)" >&2
off1=$(measure export-off "http://127.0.0.1:$off_port/x")
on1=$(measure export-on "http://127.0.0.1:$on_port/x")
off2=$(measure export-off "http://127.0.0.1:$off_port/x")
on2=$(measure export-on "http://127.0.0.1:$on_port/x")
sleep 2
echo "receiver: $(tail -1 "$state/sink.log")" >&2
python3 - "$off1" "$on1" "$off2" "$on2" <<'PY'
import sys
f1, n1, f2, n2 = map(float, sys.argv[1:])
print(f"export on / export off: {(n1 + n2) / (f1 + f2):.1%} of the requests/s "
      f"(runs: {n1 / f1:.1%}, {n2 / f2:.1%})")
PY
