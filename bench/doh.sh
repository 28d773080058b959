#!/usr/bin/env bash
# DoH benchmark: cached-answer queries over HTTP/2 with TLS (h2load) through Virga's DoH
# sample, next to the same queries sent to unbound's own DoH endpoint, in the same run.
# unbound serves a local test zone (nothing leaves loopback); Virga's answers come from the
# host cache after the first query.
#
#   bench/doh.sh [requests=100000] [clients=16] [streams=8]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
requests=${1:-100000}
clients=${2:-16}
streams=${3:-8}
prepare 1 1 unbound nghttp2-client openssl

port=18780
dns_port=18781
doh_port=18782
state=$(mktemp -d)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -keyout "$state/key.pem" -out "$state/cert.pem" -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
cat > "$state/unbound.conf" <<CONF
server:
    interface: 127.0.0.1@$dns_port
    interface: 127.0.0.1@$doh_port
    https-port: $doh_port
    http-endpoint: "/dns-query"
    tls-service-key: "$state/key.pem"
    tls-service-pem: "$state/cert.pem"
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$state"
    pidfile: ""
    use-syslog: no
    logfile: ""
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    num-threads: 1
    local-zone: "." refuse
    local-zone: "test." static
    local-data: "www.test. 3600 IN A 192.0.2.1"
CONF
{ server_toml "$port" "$state"; cat <<TOML
[fetch]
ca_certs = ["$state/cert.pem"]

[[deployments]]
name = "doh"
module = "$PWD/samples/target/wasm32-wasip2/release/doh.wasm"
routes = ["*/dns-query"]
allow = ["https://127.0.0.1:$doh_port"]
vars = { upstream = "https://127.0.0.1:$doh_port/dns-query" }
TOML
} | sed 's/^https = "off"/https = "127.0.0.1:'$((port + 10))'"/' > "$state/virga.toml"
unbound -d -c "$state/unbound.conf" >/dev/null 2>&1 &
unbound_pid=$!
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid $unbound_pid 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$state"' EXIT
# www.test A, id 0 (RFC 8484 §4.1 recommends ID 0 for cache friendliness).
query=$(printf '\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x04test\x00\x00\x01\x00\x01' | basenc --base64url | tr -d '=')
virga_url="https://127.0.0.1:$((port + 10))/dns-query?dns=$query"
unbound_url="https://127.0.0.1:$doh_port/dns-query?dns=$query"
for _ in $(seq 100); do curl -skf -o /dev/null "$virga_url" && curl -skf -o /dev/null "$unbound_url" && break; sleep 0.2; done
status=$(curl -sk -D - -o /dev/null "$virga_url" | tr -d '\r' | awk -F': ' 'tolower($1)=="cache-status" {print $2}')
case "$status" in *hit*) ;; *) echo "the DoH answer is not a cache hit: '$status'" >&2; cat "$state/virga.toml" >&2; curl -sk "$virga_url" >&2; exit 1 ;; esac

h2() {
  local out rps
  out=$(h2load -n "$requests" -c "$clients" -m "$streams" "$2" 2>&1)
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  printf '%-16s %10s req/s   %s\n' "$1" "$rps" "$(grep -m1 '^requests:' <<<"$out")" >&2
  echo "$rps"
}
echo "h2load -n $requests -c $clients -m $streams, HTTP/2 over TLS, GET ?dns= (www.test A)" >&2
u1=$(h2 unbound "$unbound_url")
v1=$(h2 virga-doh "$virga_url")
u2=$(h2 unbound "$unbound_url")
v2=$(h2 virga-doh "$virga_url")
python3 - "$u1" "$v1" "$u2" "$v2" <<'PY'
import sys
u1, v1, u2, v2 = map(float, sys.argv[1:])
print(f"Virga DoH (cached) / unbound DoH: {(v1 + v2) / (u1 + u2):.1%} of unbound's queries/s "
      f"(runs: {v1 / u1:.1%}, {v2 / u2:.1%})")
PY
