#!/usr/bin/env bash
# Cache benchmark: cache hits through the cache-proxy sample (host cache, RFC 9111) for a 1 KiB
# and a 100 KiB response, next to hello, in the same run with wrk (HTTP/1.1 keep-alive). The
# origin (python3 -m http.server, files dated ten days back so that heuristic freshness keeps
# them fresh for a day) is asked once per size; every measured request is a hit.
#
#   bench/cache.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-64}"

port=18580
origin_port=18581
state=$(mktemp -d)
mkdir -p "$state/www"
head -c 1024 /dev/urandom > "$state/www/1k"
head -c 102400 /dev/urandom > "$state/www/100k"
touch -d '10 days ago' "$state/www/1k" "$state/www/100k"
{ server_toml "$port" "$state"; hello_toml "*/hello"; cat <<TOML
[[deployments]]
name = "proxy"
module = "$PWD/samples/target/wasm32-wasip2/release/cache_proxy.wasm"
routes = ["*/*"]
allow = ["http://127.0.0.1:$origin_port"]
vars = { origin = "http://127.0.0.1:$origin_port" }
TOML
} > "$state/virga.toml"
(cd "$state/www" && exec python3 -m http.server --bind 127.0.0.1 $origin_port) >/dev/null 2>&1 &
origin_pid=$!
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid $origin_pid 2>/dev/null || true; rm -rf "$state"' EXIT
wait_for "http://127.0.0.1:$port/hello"
wait_for "http://127.0.0.1:$origin_port/1k"
for size in 1k 100k; do
  curl -sf -o /dev/null "http://127.0.0.1:$port/$size"
  status=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$port/$size" | tr -d '\r' | awk -F': ' 'tolower($1)=="cache-status" {print $2}')
  case "$status" in *hit*) ;; *) echo "/$size is not a cache hit: '$status'" >&2; exit 1 ;; esac
done

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive" >&2
h1=$(measure hello "http://127.0.0.1:$port/hello")
k1=$(measure hit-1KiB "http://127.0.0.1:$port/1k")
m1=$(measure hit-100KiB "http://127.0.0.1:$port/100k")
h2=$(measure hello "http://127.0.0.1:$port/hello")
k2=$(measure hit-1KiB "http://127.0.0.1:$port/1k")
m2=$(measure hit-100KiB "http://127.0.0.1:$port/100k")
python3 - "$h1" "$k1" "$m1" "$h2" "$k2" "$m2" <<'PY'
import sys
h1, k1, m1, h2, k2, m2 = map(float, sys.argv[1:])
h = h1 + h2
print(f"cache hit 1 KiB / hello: {(k1 + k2) / h:.1%} (runs: {k1 / h1:.1%}, {k2 / h2:.1%})")
print(f"cache hit 100 KiB / hello: {(m1 + m2) / h:.1%} (runs: {m1 / h1:.1%}, {m2 / h2:.1%})")
PY
