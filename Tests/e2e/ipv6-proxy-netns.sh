#!/usr/bin/env bash
# IPv6 end to end (issue 12, part 2): the same three hosts as proxy-netns.sh, on IPv6 only.
#
#   c6-client 2001:db8:81::2 ── 2001:db8:81::1 c6-gateway 2001:db8:82::1 ── 2001:db8:82::2 c6-server
#   unmodified curl -6            kms-proxy (host A), the          kms-proxy endpoint (host B)
#   resolv.conf -> gateway        KMS hierarchy on IPv6, a local   + a web server on [::1]:8080
#                                 route for fd00:99::/120
#
# curl asks AAAA for hostb.c.a.xx., gets an intercept address from the IPv6 pool, and the
# tunnel to host B runs over IPv6. Both bind modes: `wildcard` (0.0.0.0 and :: on one port,
# the latter IPV6_V6ONLY) and `each` (one socket per pool address, bound with IPV6_FREEBIND:
# no pool address is on any interface, the local route is all there is). A capture on the
# gateway-server link must show the tunnel and no plaintext of the page.
#
# Needs root, ip (iproute2), tcpdump, curl and python3; otherwise it says why and skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(pwd)/${BIN:-.build/debug}

SCRIPT=ipv6-proxy-netns
NAMESPACES="c6-client c6-gateway c6-server"
WORK=$(mktemp -d)
. Tests/e2e/netns-lib.sh
require_namespaces ip tcpdump curl python3
trap cleanup EXIT

for ns in $NAMESPACES; do ip netns add $ns; in_ns $ns ip link set lo up; done
# The links carry IPv4 only for `link`'s sake; nothing below uses it.
link c6-client c6-c 10.81.1.2/24 c6-gateway c6-gc 10.81.1.1/24
link c6-server c6-s 10.81.2.2/24 c6-gateway c6-gs 10.81.2.1/24
in_ns c6-client ip -6 addr add 2001:db8:81::2/64 dev c6-c nodad
in_ns c6-gateway ip -6 addr add 2001:db8:81::1/64 dev c6-gc nodad
in_ns c6-gateway ip -6 addr add 2001:db8:82::1/64 dev c6-gs nodad
in_ns c6-server ip -6 addr add 2001:db8:82::2/64 dev c6-s nodad
in_ns c6-client ip -6 route add default via 2001:db8:81::1
in_ns c6-server ip -6 route add default via 2001:db8:82::1
# The intercept prefix is the gateway's, by a local route: no address of it is assigned.
in_ns c6-gateway ip -6 route add local fd00:99::/120 dev lo
mkdir -p /etc/netns/c6-client
echo "nameserver 2001:db8:81::1" > /etc/netns/c6-client/resolv.conf

# --- the example hierarchy on the gateway's IPv6 address; host B at its IPv6 address
copy_hierarchy "[2001:db8:82::1]"
sed -i 's/hostb\.c\.a\.xx\.pub\.pem 127\.0\.0\.12/hostb.c.a.xx.pub.pem 2001:db8:82::2/' "$WORK/hierarchy/c.a.xx.conf"
H="$WORK/hierarchy"
check "the KMS hierarchy starts on the gateway, on IPv6" start_kmsd c6-gateway
check "AAAA for host B through the hierarchy is its IPv6 address" \
  test "$(in_ns c6-gateway dig +short +time=3 +tries=1 @2001:db8:82::1 -p 5303 AAAA hostb.c.a.xx.)" = "2001:db8:82::2"

# --- host B: a page on [::1]:8080 and its receiving endpoint on IPv6
MARK="countersign-v6-page-$RANDOM$RANDOM"
mkdir -p "$WORK/www" && echo "<html><body>$MARK</body></html>" > "$WORK/www/index.html"
in_ns_background c6-server "$WORK/http.out" python3 -m http.server 8080 --bind ::1 --directory "$WORK/www"
cat > "$H/proxy-b6.conf" <<CONF
dns        [2001:db8:82::2]:5300
identity   default hostb.conf
cug        cug-b.conf
pool       10.98.0.1 4
endpoint   [2001:db8:82::2]:8443
inbound    inbound-b.conf
forward    ::1
CONF
in_ns_background c6-server "$WORK/proxy-b.out" "$BIN/kms-proxy" "$H/proxy-b6.conf"
check "host B's endpoint starts on IPv6" wait_for "$WORK/proxy-b.out" "^ready"

# run_mode MODE: the gateway's proxy with `intercept-bind MODE`, then curl through it.
run_mode() {
  local mode=$1
  cat > "$H/proxy-gw6.conf" <<CONF
dns             [2001:db8:81::1]:53
upstream        [2001:db8:82::1]:5303
identity        default hosta.conf
cug             cug-a.conf
pool            10.99.0.1 8
pool-v6         fd00:99::1 8
ports           8080
intercept-bind  $mode
tunnel-port     8443
control         $WORK/run/proxy-gw6.control
CONF
  in_ns_background c6-gateway "$WORK/proxy-gw-$mode.out" "$BIN/kms-proxy" "$H/proxy-gw6.conf"
  local pid=$!
  check "$mode: the gateway's proxy starts with an IPv6 pool" wait_for "$WORK/proxy-gw-$mode.out" "^ready"
  start_capture c6-gateway c6-gs "$WORK/link-$mode.pcap"
  local tcpdump=$CAPTURE_PID
  local page resolved
  page=$(in_ns c6-client curl -6 -s -m 15 http://hostb.c.a.xx.:8080/index.html)
  check "$mode: curl -6 in the client namespace gets the page from host B" grep -q "$MARK" <<<"$page"
  resolved=$(in_ns c6-client getent ahostsv6 hostb.c.a.xx. | awk 'NR==1 {print $1}')
  check "$mode: the client was given an IPv6 intercept address, not host B's" grep -q '^fd00:99::' <<<"$resolved"
  tunnel_packets() { tcpdump -nn -r "$WORK/link-$mode.pcap" 'ip6 and tcp port 8443' 2>/dev/null | grep -c 'length [1-9]'; }
  for _ in $(seq 1 100); do [ "$(tunnel_packets)" -ge 3 ] && break; sleep 0.1; done
  kill -TERM "$tcpdump"; wait "$tcpdump" 2>/dev/null
  check "$mode: the tunnel ran over IPv6 on the gateway-server link" test "$(tunnel_packets)" -gt 0
  check "$mode: the capture holds no plaintext of the page or the request" \
    bash -c "! grep -a -q -e '$MARK' -e 'GET /index.html' '$WORK/link-$mode.pcap'"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null
}
run_mode wildcard
run_mode each

if [ "$failed" -gt 0 ]; then
  for f in kmsd.out proxy-b.out proxy-gw-wildcard.out proxy-gw-each.out http.out; do echo "--- $f"; tail -20 "$WORK/$f"; done
fi
echo "$SCRIPT: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
