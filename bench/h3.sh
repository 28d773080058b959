#!/usr/bin/env bash
# HTTP/3 next to HTTP/2: hello on one `virga serve` (TLS listener and HTTP/3 on the same
# port), loaded by the same client (oha, built with its http3 feature; installed through
# cargo when missing) over each protocol, alternately, twice. Prints requests/s, p50 and p99
# for each and HTTP/3's share of HTTP/2's requests/s.
#
#   bench/h3.sh [seconds=10] [connections=8] [streams per connection=8]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-8}"
streams=${3:-8}
if ! command -v oha >/dev/null || ! oha --help | grep -q 'Available values 0.9, 1.0, 1.1, 2, 3'; then
  cargo install oha --version =1.16.0 --features http3 --locked
fi

port=18443
state=$(mktemp -d)
cat > "$state/virga.toml" <<TOML
[server]
http = "127.0.0.1:18080"
https = "127.0.0.1:$port"
admin = "off"
h3_idle_timeout_ms = 2000
state_dir = "$state/state"

$(hello_toml '*/*')
TOML
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
virga_pid=$!
trap 'kill $virga_pid 2>/dev/null || true; rm -rf "$state"' EXIT
wait_for "http://127.0.0.1:18080/x"

# run NAME HTTP_VERSION: prints the figures on stderr, echoes requests/s.
run() {
  local json
  json=$(oha -z "${secs}s" -c "$conns" -p "$streams" --http-version "$2" --insecure \
    --no-tui --output-format json "https://localhost:$port/x")
  # Requests/s are the answered requests over the run's duration: oha's own figure
  # divides by its total time, which over HTTP/3 includes waiting for the server to close
  # the connections it leaves open at the end (the idle timeout).
  python3 - "$1" "$json" "$secs" <<'PY'
import json, sys
name, data, secs = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
p = data["latencyPercentiles"]
codes = data.get("statusCodeDistribution", {})
rps = sum(codes.values()) / secs
print(f"{name:<8} {rps:10.0f} req/s   p50 {p['p50'] * 1e3:7.2f} ms   "
      f"p99 {p['p99'] * 1e3:7.2f} ms   statuses {codes}", file=sys.stderr)
print(rps)
PY
}

echo "oha -c$conns -p$streams -z${secs}s, GET /x (hello sample), same host and port" >&2
h2a=$(run h2 2)
h3a=$(run h3 3)
h2b=$(run h2 2)
h3b=$(run h3 3)
python3 - "$h2a" "$h3a" "$h2b" "$h3b" <<'PY'
import sys
a2, a3, b2, b3 = map(float, sys.argv[1:])
print(f"h3 / h2: {(a3 + b3) / (a2 + b2):.1%} of HTTP/2's requests/s "
      f"(runs: {a3 / a2:.1%}, {b3 / b2:.1%})")
PY
