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
# The proxy is the client's only resolver: a name outside the hierarchy (www.example.test.,
# served by a stock NSD in the server namespace) resolves through it to its real address and
# its page comes in the clear, as for any resolver.
#
# Needs root, ip (iproute2), tcpdump, curl, python3 and nsd; otherwise it says why and skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(pwd)/${BIN:-.build/debug}

SCRIPT=proxy-netns
NAMESPACES="cs-client cs-gateway cs-server"
WORK=$(mktemp -d)
. Tests/e2e/netns-lib.sh
require_namespaces ip tcpdump curl python3 nsd
trap cleanup EXIT

# --- the three hosts and two links
for ns in $NAMESPACES; do ip netns add $ns; in_ns $ns ip link set lo up; done
link cs-client cs-c 10.77.1.2/24 cs-gateway cs-gc 10.77.1.1/24
link cs-server cs-s 10.77.2.2/24 cs-gateway cs-gs 10.77.2.1/24
in_ns cs-client ip route add default via 10.77.1.1
in_ns cs-server ip route add default via 10.77.2.1
# The gateway routes between its links (for traffic to names outside the group), and takes
# every address of the intercept prefix as its own (AnyIP).
in_ns cs-gateway sysctl -qw net.ipv4.ip_forward=1
in_ns cs-gateway ip route add local 10.99.0.0/24 dev lo
mkdir -p /etc/netns/cs-client
echo "nameserver 10.77.1.1" > /etc/netns/cs-client/resolv.conf

# --- the example hierarchy, moved onto the gateway's server-side address
copy_hierarchy 10.77.2.1
sed -i 's/hostb\.c\.a\.xx\.pub\.pem 127\.0\.0\.12/hostb.c.a.xx.pub.pem 10.77.2.2/' "$WORK/hierarchy/c.a.xx.conf"
H="$WORK/hierarchy"
check "the KMS hierarchy starts on the gateway" start_kmsd cs-gateway

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

# --- a stock authoritative server (NSD) for a zone outside the hierarchy, and a plain web page
mkdir -p "$WORK/nsd" "$WORK/www-plain"
PLAIN="plain-page-$RANDOM$RANDOM"
echo "<html><body>$PLAIN</body></html>" > "$WORK/www-plain/index.html"
cat > "$WORK/nsd/example.test.zone" <<ZONE
\$ORIGIN example.test.
\$TTL 300
@    IN SOA ns.example.test. admin.example.test. 1 3600 900 604800 60
@    IN NS  ns.example.test.
ns   IN A   10.77.2.2
www  IN A   10.77.2.2
ZONE
cat > "$WORK/nsd/nsd.conf" <<NSD
server:
  ip-address: 10.77.2.2
  port: 53
  username: ""
  zonesdir: "$WORK/nsd"
  database: ""
  pidfile: "$WORK/nsd/nsd.pid"
  xfrdfile: "$WORK/nsd/xfrd.state"
  zonelistfile: "$WORK/nsd/zone.list"
  logfile: "$WORK/nsd/nsd.log"
remote-control:
  control-enable: no
zone:
  name: example.test
  zonefile: example.test.zone
NSD
in_ns_background cs-server "$WORK/nsd.out" nsd -d -c "$WORK/nsd/nsd.conf"
in_ns_background cs-server "$WORK/http-plain.out" python3 -m http.server 8081 --bind 10.77.2.2 --directory "$WORK/www-plain"
nsd_answers() { [ "$(in_ns cs-gateway dig +short +time=1 +tries=1 @10.77.2.2 www.example.test. A)" = "10.77.2.2" ]; }
for _ in $(seq 1 100); do nsd_answers && break; sleep 0.1; done
check "NSD serves example.test. in the server namespace" nsd_answers

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
resolver        10.77.2.2
CONF
in_ns_background cs-gateway "$WORK/proxy-gw.out" "$BIN/kms-proxy" "$H/proxy-gw.conf" --metrics 127.0.0.1:9154
check "the gateway's proxy starts" wait_for "$WORK/proxy-gw.out" "^ready"

# --- capture the gateway–server link while the client fetches the page
start_capture cs-gateway cs-gs "$WORK/link.pcap"
TCPDUMP=$CAPTURE_PID
# Control: the client–gateway leg is plaintext by design (the gateway is the encryption node),
# so the same search must find the page there; otherwise the check below proves nothing.
start_capture cs-gateway cs-gc "$WORK/client.pcap"
TCPDUMP_CLIENT=$CAPTURE_PID

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

# --- the proxy as the only resolver: a name outside the hierarchy, from a stock server
plain=$(in_ns cs-client curl -s -m 15 http://www.example.test:8081/index.html)
check "curl in the client namespace gets a page by a name outside the hierarchy" grep -q "$PLAIN" <<<"$plain"
check "that name resolved to its real address (not a group peer)" \
  test "$(in_ns cs-client getent ahostsv4 www.example.test. | awk 'NR==1 {print $1}')" = "10.77.2.2"
nx=$(in_ns cs-client dig +time=3 +tries=1 @10.77.1.1 nowhere.example.test. A)
check "an unknown name outside the hierarchy is NXDOMAIN with the zone's SOA" \
  bash -c "grep -q 'status: NXDOMAIN' <<<\"\$1\" && grep -q 'SOA' <<<\"\$1\"" _ "$nx"

status=$("$BIN/kms-proxy" status --control "$WORK/run/proxy-gw.control")
check "kms-proxy status lists the mapping" grep -q "hostb.c.a.xx. \[10.77.2.2\]" <<<"$status"
check "kms-proxy status shows the mapping's key and its validity" grep -q "key p256:.*valid until 20" <<<"$status"
pinged() {
  local out
  out=$("$BIN/kms-proxy" ping hostb.c.a.xx. --control "$WORK/run/proxy-gw.control") || { echo "$out"; return 1; }
  grep -q "ok   resolve" <<<"$out" && grep -q "ok   tunnel .*TLS 1.3" <<<"$out" && grep -q "ok   endpoint .*ports=8080" <<<"$out"
}
check "kms-proxy ping: resolve, key, tunnel and host B's endpoint verdict, each timed (exit 0)" pinged

# /metrics of the gateway's proxy: HELP lines, latency histograms, gauges, bytes relayed.
in_ns cs-gateway curl -s -m 5 http://127.0.0.1:9154/metrics > "$WORK/proxy-metrics.txt"
PM="$WORK/proxy-metrics.txt"
check "proxy /metrics has a HELP line for every family" metrics_helped "$PM" kms_proxy_tunnels
check "proxy /metrics: DNS answer, key fetch and tunnel set-up histograms" \
  metrics_positive "$PM" kms_proxy_dns_seconds_count kms_proxy_key_fetch_seconds_count kms_proxy_tunnel_setup_seconds_count
check "proxy /metrics: bytes relayed each way" \
  metrics_positive "$PM" 'kms_proxy_relayed_bytes_total{direction="sent"}' 'kms_proxy_relayed_bytes_total{direction="received"}'
check "proxy /metrics: the live mapping and the pool in use" \
  metrics_positive "$PM" 'kms_proxy_mappings{kind="intercept"}' 'kms_proxy_pool_addresses{family="ipv4",state="used"}'
check "proxy /metrics says which build runs" grep -q '^kms_proxy_build_info{version="[0-9.]*"} 1' "$WORK/proxy-metrics.txt"

# SIGHUP reloads the CUG table and keeps serving (it used to kill the proxy). The client's
# resolver asks the gateway again: the mapping made before the reload is kept.
gw_pid=$(pgrep -f "kms-proxy $H/proxy-gw.conf" | head -1)
kill -HUP "$gw_pid"
check "kms-proxy reloads on SIGHUP" wait_for "$WORK/proxy-gw.out" "^reloaded   cug:"
check "kms-proxy is still running after SIGHUP" kill -0 "$gw_pid"
page=$(in_ns cs-client curl -s -m 15 http://hostb.c.a.xx.:8080/index.html)
check "after SIGHUP curl still gets the page through the tunnel" grep -q "$MARK" <<<"$page"

# --- a network the gateway joins after the proxy started (DHCP after boot) is served
# The gateway's proxy has no dns-allow: this host and its networks may ask. A client on
# 10.77.5.0/24 is outside them (the gateway only routes there) until the gateway takes an
# address in it; then, within the 2 s the proxy reads its interfaces again, it is answered.
in_ns cs-client ip addr add 10.77.5.2/24 dev cs-c
in_ns cs-gateway ip route add 10.77.5.0/24 dev cs-gc
late_client() { in_ns cs-client dig +time=1 +tries=1 -b 10.77.5.2 @10.77.1.1 www.example.test. A; }
check "a client on a network the gateway has no address in is REFUSED (dns-allow)" \
  bash -c "$(declare -f in_ns late_client); late_client | grep -q 'status: REFUSED'"
in_ns cs-gateway ip route del 10.77.5.0/24 dev cs-gc
in_ns cs-gateway ip addr add 10.77.5.1/24 dev cs-gc
served_late() {
  for _ in $(seq 1 50); do
    late_client | grep -q 'status: NOERROR' && return 0
    sleep 0.1
  done
  return 1
}
check "once the gateway has an address there, that client is answered (within 5 s)" served_late

if [ "$failed" -gt 0 ]; then
  for f in kmsd.out proxy-b.out proxy-gw.out http.out nsd.out nsd/nsd.log; do echo "--- $f"; tail -20 "$WORK/$f"; done
fi
echo "$SCRIPT: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
