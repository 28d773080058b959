#!/usr/bin/env bash
# Fleet convergence: a three-node NATS JetStream cluster and three `virga serve` hosts on
# loopback; N deploys (default 20) through host 1's admin API, each timed from `virga deploy`
# returning to all three hosts serving the new version (polled every millisecond). Prints
# the median and the maximum.
#
#   bench/fleet.sh [deploys=20]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
scripts/setup nats-server curl
cargo build --release --quiet -p virga-cli
(cd runtime/test-programs && cargo build --release --quiet --target wasm32-wasip2 -p echo)
echo_wasm=$PWD/runtime/test-programs/target/wasm32-wasip2/release/echo.wasm
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT

base=18300
for i in 0 1 2; do
  cat > "$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((base + i))
http: 127.0.0.1:$((base + 10 + i))
jetstream { store_dir: "$dir/n$i" }
cluster { name: bench, listen: 127.0.0.1:$((base + 20 + i)), routes: [nats://127.0.0.1:$((base + 20)), nats://127.0.0.1:$((base + 21)), nats://127.0.0.1:$((base + 22))] }
CONF
  nats-server -c "$dir/n$i.conf" >/dev/null 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$((base + 10 + i))/healthz" >/dev/null && break; sleep 0.1; done
done
for h in 0 1 2; do
  cat > "$dir/h$h.toml" <<TOML
[server]
http = "127.0.0.1:$((base + 30 + h))"
https = "off"
admin = "127.0.0.1:$((base + 40 + h))"
admin_token = "bench"
state_dir = "$dir/h$h"

[store]
kind = "nats"
servers = ["nats://127.0.0.1:$base", "nats://127.0.0.1:$((base + 1))", "nats://127.0.0.1:$((base + 2))"]
replicas = 3
TOML
  target/release/virga serve --config "$dir/h$h.toml" >/dev/null 2>&1 &
  pids+=($!)
done
for h in 0 1 2; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$((base + 40 + h))/v1/health" >/dev/null && break; sleep 0.1; done
done

python3 - "$n" "$echo_wasm" "$base" <<'PY'
import http.client, statistics, subprocess, sys, time
n, wasm, base = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hosts = [http.client.HTTPConnection("127.0.0.1", base + 30 + h) for h in range(3)]
def value(conn):
    try:
        conn.request("GET", "/env?V")
        return conn.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        conn.close()
        return None
times = []
for i in range(1, n + 1):
    subprocess.run(["target/release/virga", "deploy", wasm, "--name", "app", "--route", "*/*",
                    "--var", f"V={i}", "--admin", f"http://127.0.0.1:{base + 40}",
                    "--token", "bench"], check=True, stdout=subprocess.DEVNULL)
    start = time.monotonic()
    pending = set(range(3))
    while pending:
        pending = {h for h in pending if value(hosts[h]) != str(i)}
        if pending:
            if time.monotonic() - start > 30:
                sys.exit(f"deploy {i}: hosts {sorted(pending)} never served it")
            time.sleep(0.001)
    times.append((time.monotonic() - start) * 1000)
print(f"fleet of 3 hosts, {n} deploys: from `virga deploy` returning to all three serving the "
      f"new version: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms; "
      f"the first (a component new to the hosts, fetched and compiled by each) "
      f"{times[0]:.1f} ms, the others (same component, new variables) median "
      f"{statistics.median(times[1:] or times):.1f} ms, max {max(times[1:] or times):.1f} ms")
PY
