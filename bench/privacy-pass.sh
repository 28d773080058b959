#!/usr/bin/env bash
# Privacy Pass benchmark: token verifications through the privacy-pass-origin sample next to
# hello, in the same run with wrk (HTTP/1.1 keep-alive). wrk sends the RFC 9578 A.2 vector
# token over and over: the first is accepted, every later one is fully checked (type, key ID,
# challenge digest, RSA-PSS authenticator through virga:edge/crypto) and then refused as
# already redeemed (a host-cache lookup). So each request is one complete verification.
#
#   bench/privacy-pass.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-64}"

port=18680
state=$(mktemp -d)
eval "$(python3 - spec-tests/vectors/rfc9578-a2-token-type2-vector1.json <<'PY'
import base64, json, sys
v = json.load(open(sys.argv[1]))
c = base64.urlsafe_b64decode(v["challenge"] + "==")
n = int.from_bytes(c[2:4], "big"); issuer = c[4:4 + n].decode(); at = 4 + n
k = c[at]; context = base64.urlsafe_b64encode(c[at + 1:at + 1 + k]).decode(); at += 1 + k
origin = c[at + 2:].decode()
print(f"issuer={issuer} origin={origin} context={context} key={v['token_key']} token={v['token']}")
PY
)"
{ server_toml "$port" "$state"; hello_toml "*/hello"; cat <<TOML
[[deployments]]
name = "origin"
module = "$PWD/samples/target/wasm32-wasip2/release/privacy_pass_origin.wasm"
routes = ["*/*"]
vars = { issuer_name = "$issuer", origin_info = "$origin", redemption_context = "$context", token_key = "$key" }
TOML
} > "$state/virga.toml"
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$state"' EXIT
wait_for "http://127.0.0.1:$port/hello"
auth="PrivateToken token=\"$token\""
first=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: $auth" "http://127.0.0.1:$port/p")
second=$(curl -s -H "authorization: $auth" "http://127.0.0.1:$port/p")
[ "$first" = 200 ] || { echo "the vector token was not accepted ($first)" >&2; exit 1; }
case "$second" in *"already redeemed"*) ;; *) echo "replay answered '$second'" >&2; exit 1 ;; esac
cat > "$state/token.lua" <<LUA
wrk.headers["authorization"] = [[$auth]]
LUA

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive" >&2
h1=$(measure hello "http://127.0.0.1:$port/hello")
v1=$(measure token-verify "http://127.0.0.1:$port/p" "$state/token.lua")
h2=$(measure hello "http://127.0.0.1:$port/hello")
v2=$(measure token-verify "http://127.0.0.1:$port/p" "$state/token.lua")
python3 - "$h1" "$v1" "$h2" "$v2" <<'PY'
import sys
h1, v1, h2, v2 = map(float, sys.argv[1:])
print(f"token verification / hello: {(v1 + v2) / (h1 + h2):.1%} of hello's requests/s "
      f"(runs: {v1 / h1:.1%}, {v2 / h2:.1%})")
PY
