#!/usr/bin/env bash
# Restart cost: deploy N components (default 20) to `virga serve`, stop it, start it again,
# and measure how long until the first request is answered. Restored deployments load
# precompiled artifacts, so nothing is recompiled.
#
#   bench/restart.sh [deployments=20]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
scripts/setup
cargo build --release --quiet -p virga-cli
(cd samples && cargo build --release --quiet --target wasm32-wasip2)
hello=samples/target/wasm32-wasip2/release/hello.wasm
dir=$(mktemp -d)
cat > "$dir/virga.toml" <<TOML
[server]
http = "127.0.0.1:18180"
https = "off"
admin = "127.0.0.1:18181"
admin_token = "bench"
state_dir = "$dir/state"
TOML
start() { target/release/virga serve --config "$dir/virga.toml" >/dev/null 2>&1 & echo $!; }
wait_up() { for _ in $(seq 500); do curl -sf -o /dev/null "$1" && return 0; sleep 0.01; done; return 1; }

pid=$(start)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
wait_up http://127.0.0.1:18181/v1/health
for i in $(seq "$n"); do
  target/release/virga deploy "$hello" --name "app$i" --route "*/app$i" \
    --admin http://127.0.0.1:18181 --token bench >/dev/null
done
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

t0=$(date +%s.%N)
pid=$(start)
wait_up "http://127.0.0.1:18180/app$n"
t1=$(date +%s.%N)
python3 -c "print(f'restart with $n deployments: first request answered after {($t1 - $t0) * 1000:.0f} ms (process start included)')"
