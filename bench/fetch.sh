#!/usr/bin/env bash
# Outbound fetch benchmark: a handler (runtime/test-programs/fetcher, `/proxy`) that fetches
# from a loopback upstream (the plain hyper example) on `virga serve`, next to wrk hitting the
# same upstream directly, in the same run. Prints requests/s, p50/p99 and the ratio.
#
#   bench/fetch.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-64}"
cargo build --release --quiet -p virga --example plain_hyper
(cd runtime/test-programs && cargo build --release --quiet --target wasm32-wasip2 -p fetcher)

virga_port=18180
upstream_port=18191
state=$(mktemp -d)
{ server_toml "$virga_port" "$state"; cat <<TOML
[[deployments]]
name = "fetcher"
module = "$PWD/runtime/test-programs/target/wasm32-wasip2/release/fetcher.wasm"
routes = ["*/*"]
allow = ["http://127.0.0.1:$upstream_port"]
TOML
} > "$state/virga.toml"
target/release/examples/plain_hyper 127.0.0.1:$upstream_port >/dev/null &
upstream_pid=$!
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
virga_pid=$!
trap 'kill $virga_pid $upstream_pid 2>/dev/null || true; rm -rf "$state"' EXIT
proxy="/proxy?url=http%3A%2F%2F127.0.0.1%3A$upstream_port%2Fx"
for url in "http://127.0.0.1:$upstream_port/x" "http://127.0.0.1:$virga_port$proxy"; do
  wait_for "$url"
done

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive" >&2
direct1=$(measure upstream-direct "http://127.0.0.1:$upstream_port/x")
virga1=$(measure virga-fetch "http://127.0.0.1:$virga_port$proxy")
direct2=$(measure upstream-direct "http://127.0.0.1:$upstream_port/x")
virga2=$(measure virga-fetch "http://127.0.0.1:$virga_port$proxy")
python3 - "$direct1" "$virga1" "$direct2" "$virga2" <<'PY'
import sys
d1, v1, d2, v2 = map(float, sys.argv[1:])
print(f"virga handler fetching the upstream / the upstream directly: {(v1 + v2) / (d1 + d2):.1%} "
      f"of the direct requests/s (runs: {v1 / d1:.1%}, {v2 / d2:.1%})")
PY
