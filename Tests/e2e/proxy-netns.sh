#!/usr/bin/env bash
# End to end across network namespaces: three hosts on two links.
#
#   cs-client 10.77.1.2 ── 10.77.1.1 cs-gateway 10.77.2.1 ── 10.77.2.2 cs-server
#   unmodified curl          kms-proxy (host A, the            kms-proxy endpoint (host B)
#   resolv.conf -> gateway   external encryption node),        + a web server on 127.0.0.1:8080
#                            the KMS hierarchy, AnyIP route
#                            for the intercept prefix 10.99.0.0/24
#
# curl in the client namespace resolves hostb.c.a.xx. through the gateway's proxy, gets an
# intercept address, and fetches a page served in the server namespace. A capture on the
# gateway–server link must show TLS and no plaintext of the page.
#
# Needs root, ip (iproute2), tcpdump, curl and python3; otherwise it says why and skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(pwd)/${BIN:-.build/debug}

skip() { echo "proxy-netns: skipped: $*"; echo "proxy-netns: 0 passed, 0 failed, 1 skipped"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
for tool in ip tcpdump curl python3; do command -v $tool >/dev/null || skip "$tool is not installed"; done
ip netns add cs-probe-$$ 2>/dev/null || skip "this kernel or sandbox does not allow network namespaces"
ip netns del cs-probe-$$

WORK=$(mktemp -d)
cleanup() {
  # Everything the test started runs inside one of its namespaces: stop it all there.
  for ns in cs-client cs-gateway cs-server; do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
  done
  wait 2>/dev/null
  for ns in cs-client cs-gateway cs-server; do ip netns del $ns 2>/dev/null; done
  rm -rf /etc/netns/cs-client "$WORK"
}
trap cleanup EXIT

passed=0; failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
in_ns_background() {  # in_ns_background NS OUTPUT COMMAND...: started with exec, so $! is the command
  local ns=$1 out=$2; shift 2
  ip netns exec "$ns" "$@" > "$out" 2>&1 &
}
wait_for() {  # wait_for FILE TEXT: at most 30 s
  for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# --- the three hosts and two links
for ns in cs-client cs-gateway cs-server; do ip netns add $ns; in_ns $ns ip link set lo up; done
ip link add cs-c type veth peer name cs-gc
ip link add cs-s type veth peer name cs-gs
ip link set cs-c netns cs-client; ip link set cs-gc netns cs-gateway
ip link set cs-s netns cs-server; ip link set cs-gs netns cs-gateway
in_ns cs-client ip addr add 10.77.1.2/24 dev cs-c;  in_ns cs-client ip link set cs-c up
in_ns cs-gateway ip addr add 10.77.1.1/24 dev cs-gc; in_ns cs-gateway ip link set cs-gc up
in_ns cs-gateway ip addr add 10.77.2.1/24 dev cs-gs; in_ns cs-gateway ip link set cs-gs up
in_ns cs-server ip addr add 10.77.2.2/24 dev cs-s;  in_ns cs-server ip link set cs-s up
in_ns cs-client ip route add default via 10.77.1.1
in_ns cs-server ip route add default via 10.77.2.1
# The gateway takes every address of the intercept prefix as its own (AnyIP).
in_ns cs-gateway ip route add local 10.99.0.0/24 dev lo
mkdir -p /etc/netns/cs-client
echo "nameserver 10.77.1.1" > /etc/netns/cs-client/resolv.conf

# --- the example hierarchy, moved onto the gateway's server-side address
cp -r hierarchy trust "$WORK/"; mkdir -p "$WORK/run"
sed -i 's/127\.0\.0\.1:530/10.77.2.1:530/g' "$WORK"/hierarchy/*.conf
sed -i 's/hostb\.c\.a\.xx\.pub\.pem 127\.0\.0\.12/hostb.c.a.xx.pub.pem 10.77.2.2/' "$WORK/hierarchy/c.a.xx.conf"
H="$WORK/hierarchy"
in_ns_background cs-gateway "$WORK/kmsd.out" "$BIN/kmsd" "$H"/{xx,a.xx,b.a.xx,c.a.xx}.conf --banner "$H/banner.txt"
check "the KMS hierarchy starts on the gateway" wait_for "$WORK/kmsd.out" "Ctrl-C stops"

# --- host B: a page, a web server on its loopback, and its receiving endpoint
MARK="countersign-page-$RANDOM$RANDOM"
mkdir -p "$WORK/www" && echo "<html><body>$MARK</body></html>" > "$WORK/www/index.html"
in_ns_background cs-server "$WORK/http.out" python3 -m http.server 8080 --bind 127.0.0.1 --directory "$WORK/www"
cat > "$H/proxy-b-ns.conf" <<CONF
dns        10.77.2.2:5300
identity   default hostb.conf
cug        cug-b.conf
pool       10.98.0.1 4
endpoint   10.77.2.2:8443
inbound    inbound-b.conf
forward    127.0.0.1
CONF
in_ns_background cs-server "$WORK/proxy-b.out" "$BIN/kms-proxy" "$H/proxy-b-ns.conf"
check "host B's endpoint starts" wait_for "$WORK/proxy-b.out" "^ready"

# --- the gateway: host A's identity, DNS for the client, intercept prefix
cat > "$H/proxy-gw.conf" <<CONF
dns             10.77.1.1:53
upstream        10.77.2.1:5303
identity        default hosta.conf
cug             cug-a.conf
pool            10.99.0.1 200
ports           8080
intercept-bind  wildcard
tunnel-port     8443
control         $WORK/run/proxy-gw.control
CONF
in_ns_background cs-gateway "$WORK/proxy-gw.out" "$BIN/kms-proxy" "$H/proxy-gw.conf"
check "the gateway's proxy starts" wait_for "$WORK/proxy-gw.out" "^ready"

# --- capture the gateway–server link while the client fetches the page
in_ns_background cs-gateway "$WORK/tcpdump.out" tcpdump --immediate-mode -Z root -i cs-gs -U -w "$WORK/link.pcap" tcp
TCPDUMP=$!
wait_for "$WORK/tcpdump.out" "listening on"
# Control: the client–gateway leg is plaintext by design (the gateway is the encryption node),
# so the same search must find the page there; otherwise the check below proves nothing.
in_ns_background cs-gateway "$WORK/tcpdump-client.out" tcpdump --immediate-mode -Z root -i cs-gc -U -w "$WORK/client.pcap" tcp
TCPDUMP_CLIENT=$!
wait_for "$WORK/tcpdump-client.out" "listening on"

page=$(in_ns cs-client curl -s -m 15 http://hostb.c.a.xx.:8080/index.html)
check "unmodified curl in the client namespace gets the page from the server namespace" grep -q "$MARK" <<<"$page"
resolved=$(in_ns cs-client getent ahostsv4 hostb.c.a.xx. | awk 'NR==1 {print $1}')
check "the client was given an intercept address, not host B's" grep -q '^10\.99\.0\.' <<<"$resolved"

# tcpdump writes each packet as it comes (--immediate-mode, -U); wait (at most 10 s) until the
# capture holds the tunnel's data, then stop it.
data_packets() { tcpdump -nn -r "$WORK/link.pcap" 'tcp dst port 8443 and tcp[tcpflags] & tcp-push != 0' 2>/dev/null | wc -l; }
for _ in $(seq 1 100); do [ "$(data_packets)" -ge 3 ] && break; sleep 0.1; done
for _ in $(seq 1 100); do grep -a -q "$MARK" "$WORK/client.pcap" && break; sleep 0.1; done
kill -TERM $TCPDUMP $TCPDUMP_CLIENT; wait $TCPDUMP $TCPDUMP_CLIENT 2>/dev/null
packets=$(data_packets)
check "control: the plaintext client leg shows the page, so the search works" grep -a -q "$MARK" "$WORK/client.pcap"
check "the gateway–server link carried the tunnel (data to port 8443)" test "$packets" -gt 0
check "the capture holds no plaintext of the page" bash -c "! grep -a -q '$MARK' '$WORK/link.pcap'"
check "the capture holds no plaintext HTTP request" bash -c "! grep -a -q 'GET /index.html' '$WORK/link.pcap'"
# The first payload byte of a TLS record is its content type: 22 handshake, 23 application data.
handshakes=$(tcpdump -nn -r "$WORK/link.pcap" 'tcp port 8443 and tcp[((tcp[12:1] & 0xf0) >> 2):1] = 22' 2>/dev/null | wc -l)
records=$(tcpdump -nn -r "$WORK/link.pcap" 'tcp port 8443 and tcp[((tcp[12:1] & 0xf0) >> 2):1] = 23' 2>/dev/null | wc -l)
check "the capture holds TLS handshake and application-data records" test "$handshakes" -gt 0 -a "$records" -gt 0

status=$("$BIN/kms-proxy" status --control "$WORK/run/proxy-gw.control")
check "kms-proxy status lists the mapping" grep -q "hostb.c.a.xx. \[10.77.2.2\]" <<<"$status"

if [ "$failed" -gt 0 ]; then
  for f in kmsd.out proxy-b.out proxy-gw.out http.out; do echo "--- $f"; tail -20 "$WORK/$f"; done
fi
echo "proxy-netns: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
