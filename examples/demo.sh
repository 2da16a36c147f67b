#!/usr/bin/env bash
# examples/demo.sh -- egressd in two minutes, on a machine without internet.
#
# Run from the project root after `make`:   examples/demo.sh
#
# It starts, in a temp dir, a loopback HTTPS server standing in for an API
# ("api.demo.test", python3 + an openssl-made certificate), then egressd with
# one secret for that host, and shows with curl:
#   1. an allowed call,
#   2. a refused call (403 and the reason),
#   3. a request carrying only the placeholder: the API receives the real key,
#      while everything the client sees carries the placeholder.
# Nothing leaves 127.0.0.1: the API's name is pinned with --resolve and
# egressd's DNS server is a closed loopback port. Everything is cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

EGRESSD=${EGRESSD:-build/egressd}
[ -x "$EGRESSD" ] || { echo "demo: $EGRESSD not found; run make first" >&2; exit 2; }
for t in python3 openssl curl; do
	command -v "$t" >/dev/null || { echo "demo: needs $t" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/egressd-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

API=api.demo.test
REAL_KEY="sk-demo-REAL-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

step "1/6 a throwaway CA and a certificate for $API (openssl)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj "/CN=egressd demo CA" -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-subj "/CN=$API" -keyout "$tmp/api.key" -out "$tmp/api.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$API" >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/api.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
	-days 1 -extfile "$tmp/ext.cnf" -out "$tmp/api.pem" 2>/dev/null
echo "CA: $tmp/ca.pem, server certificate for $API"

step "2/6 the stand-in API: HTTPS on 127.0.0.1, answers with the headers it received"
cat >"$tmp/api.py" <<'EOF'
import http.server, json, ssl, sys
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        seen = {k: v for k, v in self.headers.items()}
        with open(d + "/api-received.log", "a") as f:   # the API's own view
            f.write("%s %s  Authorization: %s\n" % (self.command, self.path,
                                                   seen.get("Authorization", "-")))
        body = json.dumps({"you_sent": seen, "path": self.path}, indent=1).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(d + "/api.pem", d + "/api.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
with open(d + "/api.port", "w") as f:
    f.write(str(s.server_address[1]))
s.serve_forever()
EOF
python3 "$tmp/api.py" "$tmp" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/api.port" ] && break; sleep 0.05; done
API_PORT=$(cat "$tmp/api.port")
echo "stand-in API listening on 127.0.0.1:$API_PORT (as https://$API:$API_PORT)"

step "3/6 egressd: allowNet [$API], secret DEMO_API_KEY for $API"
PROXY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
POLICY=(--state-dir "$tmp/state" --allow-net "$API" --secret "DEMO_API_KEY=$API"
	--resolve "$API:$API_PORT:127.0.0.1" --allow-private 127.0.0.0/8
	--upstream-ca "$tmp/ca.pem" --dns 127.0.0.1:9)
echo "the real key lives only in egressd's environment: DEMO_API_KEY=${REAL_KEY:0:12}..."
printf '$ %s serve --listen 127.0.0.1:%s %s --log %s\n' "$EGRESSD" "$PROXY_PORT" "${POLICY[*]}" "$tmp/audit.log"
DEMO_API_KEY=$REAL_KEY "$EGRESSD" serve --listen "127.0.0.1:$PROXY_PORT" "${POLICY[@]}" \
	--log "$tmp/audit.log" 2>"$tmp/egressd.stderr" &
pids+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break
	sleep 0.05
done

echo
echo "the sandbox's environment (egressd env):"
printf '$ %s env %s --listen 127.0.0.1:%s\n' "$EGRESSD" "${POLICY[*]}" "$PROXY_PORT"
"$EGRESSD" env "${POLICY[@]}" --listen "127.0.0.1:$PROXY_PORT" | tee "$tmp/sandbox.env" | sed 's/^/  /'
set -a
# shellcheck disable=SC1091
. "$tmp/sandbox.env"
set +a
echo "inside the sandbox: DEMO_API_KEY=$DEMO_API_KEY   (a placeholder, worthless elsewhere)"

step "4/6 an allowed call (curl uses HTTPS_PROXY and CURL_CA_BUNDLE from egressd env)"
run curl -sS -o "$tmp/allowed.out" -w 'curl: HTTP %{http_code} from the API\n' "https://$API:$API_PORT/v1/models"
head -n 4 "$tmp/allowed.out"
echo "  ..."

step "5/6 a refused call: evil.demo.test is not on the allow-list"
set +e
run curl -sS -o /dev/null -D "$tmp/refused.head" -w 'curl: CONNECT answered %{http_connect}\n' \
	"https://evil.demo.test/steal"
set -e
grep -i -E '^(HTTP/|X-Egressd-Reason)' "$tmp/refused.head" | sed 's/^/  /'

step "6/6 the placeholder goes out; the API receives the real key"
run curl -sS -H "Authorization: Bearer $DEMO_API_KEY" "https://$API:$API_PORT/v1/chat" |
	tee "$tmp/client.out" | grep -i -E '"(authorization|host)"' | sed 's/^/  client sees: /'
echo
echo "what the API received (its own log):"
sed 's/^/  /' "$tmp/api-received.log"

echo
if grep -q -- "$REAL_KEY" "$tmp/api-received.log" &&
	! grep -q -- "$REAL_KEY" "$tmp/client.out" "$tmp/audit.log" "$tmp/egressd.stderr"; then
	echo "=> the API got the real key; the client, the audit log and egressd's stderr only ever show the placeholder."
else
	echo "=> UNEXPECTED: see $tmp (kept)"; trap - EXIT; exit 1
fi

echo
echo "audit log ($tmp/audit.log):"
sed 's/^/  /' "$tmp/audit.log"
