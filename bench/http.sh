#!/usr/bin/env bash
# HTTP/1.1 keep-alive benchmark: hello on `virga serve` vs. a plain hyper server returning the same
# bytes, measured in the same run with wrk (installed through apt-get when missing).
# Prints requests/s, p50 and p99 latency for each, and Virga's share of the baseline.
#
#   bench/http.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-64}"
cargo build --release --quiet -p virga --example plain_hyper
(cd samples && cargo build --release --quiet --target wasm32-wasip2)

virga_port=18080
plain_port=18091
state=$(mktemp -d)
{ server_toml "$virga_port" "$state"; cat <<TOML
[[deployments]]
name = "hello"
module = "$PWD/samples/target/wasm32-wasip2/release/hello.wasm"
routes = ["*/*"]
TOML
} > "$state/virga.toml"
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
virga_pid=$!
target/release/examples/plain_hyper 127.0.0.1:$plain_port >/dev/null &
plain_pid=$!
trap 'kill $virga_pid $plain_pid 2>/dev/null || true; rm -rf "$state"' EXIT
for port in $virga_port $plain_port; do wait_for "http://127.0.0.1:$port/x"; done

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive, GET /x (hello sample)" >&2
plain1=$(measure plain-hyper "http://127.0.0.1:$plain_port/x")
virga1=$(measure virga "http://127.0.0.1:$virga_port/x")
plain2=$(measure plain-hyper "http://127.0.0.1:$plain_port/x")
virga2=$(measure virga "http://127.0.0.1:$virga_port/x")
python3 - "$plain1" "$virga1" "$plain2" "$virga2" <<'PY'
import sys
p1, v1, p2, v2 = map(float, sys.argv[1:])
print(f"virga / plain hyper: {(v1 + v2) / (p1 + p2):.1%} of the baseline's requests/s "
      f"(runs: {v1 / p1:.1%}, {v2 / p2:.1%})")
PY
