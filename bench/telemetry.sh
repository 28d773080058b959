#!/usr/bin/env bash
# The cost of telemetry: hello on `virga serve` exporting spans, metrics and logs over
# OTLP/gRPC to a receiver on loopback, next to two identical hosts exporting nothing, in the
# same run, with wrk. Each round measures the three in a rotated order (this shared machine
# drifts, and one process can run a few percent faster than an identical one), and the
# figure is export-on against the mean of the two export-off hosts. The two export-off hosts
# against each other give the noise floor of the figure. Also prints each mode's host CPU
# time per request (the host's share of the cost, not the receiver's on the same cores)
# and what the receiver got (so the export is known to be real).
#
#   bench/telemetry.sh [seconds per run=8] [connections=64] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
rounds=${3:-3}
prepare "${1:-8}" "${2:-64}"
cargo build --release --quiet -p virga --example otlp_sink

on_port=18080
off_ports=(18082 18084)
sink_port=18417
state=$(mktemp -d)
mkdir -p "$state/on"
{ server_toml "$on_port" "$state/on"; hello_toml "*/*"; cat <<TOML
[telemetry]
otlp_endpoint = "http://127.0.0.1:$sink_port"
otlp_protocol = "grpc"
TOML
} > "$state/on/virga.toml"
target/release/examples/otlp_sink 127.0.0.1:$sink_port > "$state/sink.log" &
sink_pid=$!
# Host logs at warn: the export is what is measured, not stderr.
RUST_LOG=warn target/release/virga serve --config "$state/on/virga.toml" >/dev/null 2>&1 &
on_pid=$!
off_pids=()
for i in 0 1; do
  mkdir -p "$state/off$i"
  { server_toml "${off_ports[$i]}" "$state/off$i"; hello_toml "*/*"; } > "$state/off$i/virga.toml"
  RUST_LOG=warn OTEL_SDK_DISABLED=true target/release/virga serve --config "$state/off$i/virga.toml" >/dev/null 2>&1 &
  off_pids+=($!)
done
trap 'kill $on_pid ${off_pids[*]} $sink_pid 2>/dev/null || true; rm -rf "$state"' EXIT
for port in $on_port "${off_ports[@]}"; do wait_for "http://127.0.0.1:$port/x"; done

# cpu PID: the process's user+system CPU time so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
names=(export-on export-off-a export-off-b)
ports=($on_port "${off_ports[@]}")
pids=($on_pid "${off_pids[@]}")
# One line per measurement for the summary: "round mode requests/s cpu-ticks".
results=$state/results
echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive, GET /x (hello sample), $rounds rounds" >&2
sink_before=$(cpu $sink_pid)
for round in $(seq 0 $((rounds - 1))); do
  for k in 0 1 2; do
    m=$(((k + round) % 3))
    before=$(cpu "${pids[$m]}")
    rps=$(measure "${names[$m]}" "http://127.0.0.1:${ports[$m]}/x")
    after=$(cpu "${pids[$m]}")
    echo "$round $m $rps $((after - before))" >> "$results"
  done
done
sink_after=$(cpu $sink_pid)
sleep 2
echo "receiver: $(tail -1 "$state/sink.log")" >&2
echo "receiver CPU during the runs: $(( (sink_after - sink_before) * 1000 / hz )) ms" >&2
python3 - "$results" "$secs" "$hz" "${names[@]}" <<'PY'
import sys
from collections import defaultdict
path, secs, hz, names = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
rps = defaultdict(dict)
reqs, ticks = defaultdict(float), defaultdict(float)
for line in open(path):
    r, m, v, t = line.split()
    rps[int(r)][int(m)] = float(v)
    reqs[int(m)] += float(v) * secs
    ticks[int(m)] += float(t)
for m, name in enumerate(names):
    print(f"{name:<14} host CPU {ticks[m] / hz / reqs[m] * 1e6:6.1f} us/request")
rounds = sorted(rps)
on = [rps[r][0] / ((rps[r][1] + rps[r][2]) / 2) for r in rounds]
floor = [rps[r][2] / rps[r][1] for r in rounds]
total = sum(rps[r][0] for r in rounds) / sum((rps[r][1] + rps[r][2]) / 2 for r in rounds)
print(f"export on / export off: {total:.1%} of the requests/s "
      f"(rounds: {', '.join(f'{x:.1%}' for x in on)})")
print(f"noise floor, {names[2]} / {names[1]}: "
      f"{sum(rps[r][2] for r in rounds) / sum(rps[r][1] for r in rounds):.1%} "
      f"(rounds: {', '.join(f'{x:.1%}' for x in floor)})")
PY
