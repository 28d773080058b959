# Shared by the bench scripts (sourced). They set `secs` and `conns` first.

# Waits up to 20 s for `url` to answer; fails the script if it never does.
wait_for() {
  for _ in $(seq 100); do curl -sf "$1" >/dev/null && return; sleep 0.2; done
  echo "nothing answers at $1" >&2
  exit 1
}

# measure NAME URL [WRK_SCRIPT]: runs wrk (one thread, HTTP/1.1 keep-alive), prints
# requests/s, p50 and p99 on stderr, and echoes the requests/s.
measure() {
  local out rps p50 p99
  out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency ${3:+-s "$3"} "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-16s %10s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99" >&2
  echo "$rps"
}

# prepare [seconds] [connections] [packages...]: sets `secs` and `conns` (default 10 s, 64),
# installs wrk and the packages given, builds the virga binary and the samples.
prepare() {
  secs=${1:-10}
  conns=${2:-64}
  shift $(($# < 2 ? $# : 2))
  scripts/setup wrk "$@"
  cargo build --release --quiet -p virga-cli
  (cd samples && cargo build --release --quiet --target wasm32-wasip2)
  unset RUST_BACKTRACE RUST_LIB_BACKTRACE
}

# server_toml PORT STATE_DIR: the [server] table of a bench configuration: plain HTTP on
# 127.0.0.1:PORT, no TLS, no admin API.
server_toml() {
  printf '[server]\nhttp = "127.0.0.1:%s"\nhttps = "off"\nadmin = "off"\nstate_dir = "%s/state"\n\n' "$1" "$2"
}

# hello_toml ROUTE: a deployment of the hello sample on ROUTE, the same-run baseline.
hello_toml() {
  printf '[[deployments]]\nname = "hello"\nmodule = "%s/samples/target/wasm32-wasip2/release/hello.wasm"\nroutes = ["%s"]\n\n' "$PWD" "$1"
}
