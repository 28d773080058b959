#!/usr/bin/env bash
# HTTP/1.1 keep-alive benchmark: hello on `virga serve` vs. a plain hyper server returning the same
# bytes, measured in the same run with wrk (installed through apt-get when missing).
# Prints requests/s, p50 and p99 latency for each, and Virga's share of the baseline.
#
#   bench/http.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
scripts/setup wrk
cargo build --release --quiet -p virga-cli
cargo build --release --quiet -p virga --example plain_hyper
(cd samples && cargo build --release --quiet --target wasm32-wasip2)

virga_port=18080
plain_port=18091
state=$(mktemp -d)
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
cat > "$state/virga.toml" <<TOML
[server]
http = "127.0.0.1:$virga_port"
https = "off"
admin = "off"
state_dir = "$state/state"

[[deployments]]
name = "hello"
module = "$PWD/samples/target/wasm32-wasip2/release/hello.wasm"
routes = ["*/*"]
TOML
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
virga_pid=$!
target/release/examples/plain_hyper 127.0.0.1:$plain_port >/dev/null &
plain_pid=$!
trap 'kill $virga_pid $plain_pid 2>/dev/null || true; rm -rf "$state"' EXIT
for port in $virga_port $plain_port; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/x" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port/x" >/dev/null || { echo "nothing answers on port $port" >&2; exit 1; }
done

run() { # name port -> "rps p50_ms p99_ms"
  local out rps p50 p99
  out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$2/x")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-12s %10s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99" >&2
  echo "$rps"
}
echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive, GET /x (hello sample)" >&2
plain1=$(run plain-hyper $plain_port)
virga1=$(run virga $virga_port)
plain2=$(run plain-hyper $plain_port)
virga2=$(run virga $virga_port)
python3 - "$plain1" "$virga1" "$plain2" "$virga2" <<'PY'
import sys
p1, v1, p2, v2 = map(float, sys.argv[1:])
print(f"virga / plain hyper: {(v1 + v2) / (p1 + p2):.1%} of the baseline's requests/s "
      f"(runs: {v1 / p1:.1%}, {v2 / p2:.1%})")
PY
