#!/usr/bin/env bash
# Crypto benchmark: a handler verifying one ECDSA P-256 signature, and one blind-signing
# (RFC 9474) with an RSA-2048 host key, through virga:edge/crypto
# (runtime/test-programs/crypto-probe), next to hello, in the same run with wrk (HTTP/1.1
# keep-alive). Prints requests/s, p50/p99 and the ratios.
#
#   bench/crypto.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
prepare "${1:-10}" "${2:-64}" openssl
(cd runtime/test-programs && cargo build --release --quiet --target wasm32-wasip2 -p crypto-probe)

port=18480
state=$(mktemp -d)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$state/issuer.pem" 2>/dev/null
{ server_toml "$port" "$state"; hello_toml "*/hello"; cat <<TOML
[[deployments]]
name = "crypto"
module = "$PWD/runtime/test-programs/target/wasm32-wasip2/release/crypto_probe.wasm"
routes = ["*/run"]
keys.issuer = { algorithm = "rsabssa-sha384-pss-deterministic", file = "$state/issuer.pem" }
TOML
} > "$state/virga.toml"
target/release/virga serve --config "$state/virga.toml" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$state"' EXIT
wait_for "http://127.0.0.1:$port/hello"

# A P-256 key, a signature by it (made through the probe), and the verify request wrk sends.
key=$(openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null \
  | openssl pkcs8 -topk8 -nocrypt -outform DER | xxd -p | tr -d '\n')
msg=$(printf 'a token to check' | xxd -p | tr -d '\n')
sig=$(curl -sf --data-binary "op=sign&alg=ecdsa-p256-sha256&fmt=pkcs8&key=$key&msg=$msg" \
  "http://127.0.0.1:$port/run")
spki=$(printf '%s' "$key" | xxd -r -p | openssl pkey -inform DER -pubout -outform DER | xxd -p | tr -d '\n')
line="op=verify&alg=ecdsa-p256-sha256&fmt=spki&key=$spki&msg=$msg&sig=$sig"
answer=$(curl -sf --data-binary "$line" "http://127.0.0.1:$port/run")
[ "$answer" = valid ] || { echo "the verify request answers '$answer'" >&2; exit 1; }
cat > "$state/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$line"
LUA

# A blinded message for the issuer key (blinded by the probe under its public half), and the
# blind-sign request wrk sends.
ispki=$(openssl pkey -in "$state/issuer.pem" -pubout -outform DER | xxd -p | tr -d '\n')
alg=rsabssa-sha384-pss-deterministic
blinded=$(curl -sf --data-binary "op=blind&alg=$alg&fmt=spki&key=$ispki&msg=$msg" \
  "http://127.0.0.1:$port/run" | cut -d' ' -f2)
bline="op=named-blind-sign&name=issuer&blinded=$blinded"
answer=$(curl -sf --data-binary "$bline" "http://127.0.0.1:$port/run")
[ ${#answer} = 512 ] || { echo "the blind-sign request answers '$answer'" >&2; exit 1; }
cat > "$state/blind.lua" <<LUA
wrk.method = "POST"
wrk.body = "$bline"
LUA

echo "wrk -t1 -c$conns -d${secs}s, HTTP/1.1 keep-alive" >&2
h1=$(measure hello "http://127.0.0.1:$port/hello")
v1=$(measure ecdsa-verify "http://127.0.0.1:$port/run" "$state/post.lua")
h2=$(measure hello "http://127.0.0.1:$port/hello")
v2=$(measure ecdsa-verify "http://127.0.0.1:$port/run" "$state/post.lua")
b1=$(measure rsa2048-blind-sign "http://127.0.0.1:$port/run" "$state/blind.lua")
h3=$(measure hello "http://127.0.0.1:$port/hello")
b2=$(measure rsa2048-blind-sign "http://127.0.0.1:$port/run" "$state/blind.lua")
python3 - "$h1" "$v1" "$h2" "$v2" "$b1" "$h3" "$b2" <<'PY'
import sys
h1, v1, h2, v2, b1, h3, b2 = map(float, sys.argv[1:])
print(f"ECDSA P-256 verify handler / hello: {(v1 + v2) / (h1 + h2):.1%} of hello's requests/s "
      f"(runs: {v1 / h1:.1%}, {v2 / h2:.1%})")
print(f"RSA-2048 blind-sign handler / hello: {(b1 + b2) / (h2 + h3):.1%} of hello's requests/s "
      f"(runs: {b1 / h2:.1%}, {b2 / h3:.1%})")
PY
