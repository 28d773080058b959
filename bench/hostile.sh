#!/usr/bin/env bash
# Hostile guests under load: hello's latency alone, then while every hostile guest runs at
# once (CPU loop, memory bomb, stack overflow, 64 MiB of stdout, a never-ready pollable,
# 10 000 response fields, an endless body, a huge body, a subrequest flood), several
# connections each, on the same host. wrk (HTTP/1.1 keep-alive) for both. Two phases: hello
# at a steady rate (a request per connection every 4 ms, well below capacity: its p99 is the
# figure that counts; the goal is within 3x of alone), then flat out (throughput under
# attack). Prints hello's requests/s, p99 and the ratios of each phase.
#
#   bench/hostile.sh [seconds=10] [connections=16] [attack connections=18] [long-running lanes]
#
# The last argument sets [server] long_running_lanes (default: the host's default, half the
# cores); a large number turns the lanes off in effect, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-16}"
attackers=${3:-18}
lanes=${4:-}
(cd runtime/test-programs && cargo build --release --quiet --target wasm32-wasip2 \
  -p hostile -p looping -p memory-bomb -p fetcher)

port=18490
# The subrequest flood aims at a closed port: what it costs the host is measured, not an
# upstream's work (aimed at this host, each flood request would be 50 hello requests).
closed=18499
state=$(mktemp -d)
programs="$PWD/runtime/test-programs/target/wasm32-wasip2/release"
limits='limits = { wall_ms = 2000, memory_mib = 32, response_body_mib = 8 }'
{ server_toml "$port" "$state" | sed "${lanes:+2i long_running_lanes = $lanes}"
  hello_toml "*/hello"
  for d in hostile:h/ looping:loop memory_bomb:bomb fetcher:f/; do
    name=${d%%:*} route=${d#*:}
    printf '[[deployments]]\nname = "%s"\nmodule = "%s/%s.wasm"\nroutes = ["*/%s*"]\n%s\n' \
      "${name//_/-}" "$programs" "$name" "$route" "$limits"
    [ "$name" = fetcher ] && printf 'allow = ["http://127.0.0.1:%s"]\n' "$closed"
    echo
  done
} > "$state/virga.toml"
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid $attack 2>/dev/null || true; rm -rf "$state"' EXIT
attack=
wait_for "http://127.0.0.1:$port/hello"

flood="/f/concurrent?url=http%3A%2F%2F127.0.0.1%3A$closed%2F&n=1000"
cat > "$state/attack.lua" <<LUA
local paths = { "/loop", "/bomb", "/h/recurse", "/h/stdout", "/h/wait", "/h/headers",
                "/h/stream", "/h/huge", "$flood" }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
# Each hostile path answers as its limit says (the endless body is cut; the flood's first
# subrequest is refused by the closed port, 502, and those past the 50th fail unsent).
for p in /loop:503 /bomb:500 /h/recurse:500 /h/stdout:200 /h/wait:504 /h/headers:500 /h/huge:500 \
  "$flood:502"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port${p%:*}")
  [ "$code" = "${p##*:}" ] || { echo "${p%:*} answered $code, not ${p##*:}" >&2; exit 1; }
done

# p99 of a measure line on stderr, in ms.
p99_ms() { awk '{for(i=1;i<=NF;i++) if($i=="p99") v=$(i+1)} END {
  if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }

# hello's steady load: each connection sends a request every 4 ms (wrk's delay(); latency is
# counted from send to answer), far below the host's capacity, so that the p99 shows what the
# attack does to hello rather than hello queueing behind itself.
cat > "$state/steady.lua" <<LUA
delay = function() return 4 end
LUA

# phase NAME LUA: hello alone, then under attack, with the given wrk script (none: flat out).
phase() {
  local alone attacked
  alone=$(measure "$1-alone" "http://127.0.0.1:$port/hello" $2 2>"$state/alone")
  cat "$state/alone" >&2
  wrk -t1 -c"$attackers" -d"$((secs + 4))s" --timeout 10s -s "$state/attack.lua" \
    "http://127.0.0.1:$port" >"$state/attack" 2>&1 &
  attack=$!
  sleep 2
  attacked=$(measure "$1-attacked" "http://127.0.0.1:$port/hello" $2 2>"$state/attacked")
  cat "$state/attacked" >&2
  wait "$attack" || true
  attack=
  echo "  attack: $(awk '/requests in/ {print $1}' "$state/attack") hostile requests" >&2
  python3 - "$1" "$alone" "$attacked" "$(p99_ms <"$state/alone")" "$(p99_ms <"$state/attacked")" <<'PY'
import sys
name = sys.argv[1]
alone, attacked, p_alone, p_attacked = map(float, sys.argv[2:])
print(f"hello ({name}) under attack: {attacked / alone:.1%} of its requests/s alone; "
      f"p99 {p_alone:.2f} ms alone, {p_attacked:.2f} ms under attack = {p_attacked / p_alone:.2f}x")
PY
}

echo "hello: wrk -t1 -c$conns -d${secs}s; attack: wrk -t1 -c$attackers over 9 hostile paths" >&2
phase steady "$state/steady.lua"
phase flat-out ""
