#!/usr/bin/env bash
# End to end for issue 5, across network namespaces:
#
#   cs5-client 10.78.1.2 ── 10.78.1.1 cs5-router 10.78.2.1 ── 10.78.2.2 cs5-server (host B, CUG peer)
#   kms-proxy: policy server,         the KMS hierarchy,          10.78.2.3 (host D, not in the group)
#   kernel diversion (nftables),      forwarding                  web server on 0.0.0.0:8080,
#   unmodified curl; also the seed's                              B's receiving endpoint
#   client addresses 1.2.3.4, 5.6.7.8, 133.11.23.24
#
# 1. The figure 6 examples over the wire: the KMS's signed kms1:cug verdict depends on the
#    client's address.
# 2. An unmodified curl to host B's REAL address travels encrypted (kernel diversion into the
#    TLS tunnel), while traffic to host D is left untouched; captures between router and server
#    show both. The nftables table exists while the proxy runs and is gone after a clean exit.
# 3. IPv6 too (issue 12): host B also has 2001:db8:78:2::2. Resolving its name diverts both its
#    addresses, so curl to its IPv6 literal, or by name over IPv6, goes through the tunnel, and
#    nothing reaches its port 8080 in the clear.
# 4. Fail closed: what the tunnel does not carry (UDP, TCP to other ports) is refused, never
#    sent to host B in clear.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(pwd)/${BIN:-.build/debug}
SCRIPT=kernel-netns
NAMESPACES="cs5-client cs5-router cs5-server"
WORK=$(mktemp -d)
. Tests/e2e/netns-lib.sh
require_namespaces ip tcpdump curl python3 nft dig
trap cleanup EXIT

for ns in $NAMESPACES; do ip netns add $ns; in_ns $ns ip link set lo up; done
link cs5-client cs5-c 10.78.1.2/24 cs5-router cs5-rc 10.78.1.1/24
link cs5-server cs5-s 10.78.2.2/24 cs5-router cs5-rs 10.78.2.1/24
in_ns cs5-server ip addr add 10.78.2.3/24 dev cs5-s
for address in 1.2.3.4 5.6.7.8 133.11.23.24; do
  in_ns cs5-client ip addr add $address/32 dev cs5-c
  in_ns cs5-router ip route add $address/32 via 10.78.1.2
done
in_ns cs5-client ip route add default via 10.78.1.1
in_ns cs5-server ip route add default via 10.78.2.1
in_ns cs5-router sysctl -q -w net.ipv4.ip_forward=1
in_ns cs5-router sysctl -q -w net.ipv6.conf.all.forwarding=1
in_ns cs5-client ip -6 addr add 2001:db8:78:1::2/64 dev cs5-c nodad
in_ns cs5-router ip -6 addr add 2001:db8:78:1::1/64 dev cs5-rc nodad
in_ns cs5-router ip -6 addr add 2001:db8:78:2::1/64 dev cs5-rs nodad
in_ns cs5-server ip -6 addr add 2001:db8:78:2::2/64 dev cs5-s nodad
in_ns cs5-client ip -6 route add default via 2001:db8:78:1::1
in_ns cs5-server ip -6 route add default via 2001:db8:78:2::1
mkdir -p /etc/netns/cs5-client
echo "nameserver 127.0.0.53" > /etc/netns/cs5-client/resolv.conf

# --- the hierarchy on the router, B and D on the server, a policy database in b.a.xx.
copy_hierarchy 10.78.2.1
H="$WORK/hierarchy"
sed -i 's/hostb\.c\.a\.xx\.pub\.pem 127\.0\.0\.12/hostb.c.a.xx.pub.pem 10.78.2.2 2001:db8:78:2::2/' "$H/c.a.xx.conf"
sed -i 's/hostd\.b\.a\.xx\.pub\.pem 127\.0\.0\.14 ::1/hostd.b.a.xx.pub.pem 10.78.2.3/' "$H/b.a.xx.conf"
# The seed's figure 6 with its names mapped onto ours (SSL -> tls, IPsec -> kernel, 3DES ->
# AES-256-GCM), plus a row for this test's client, which is to reach *.c.a.xx. by kernel diversion.
cat > "$H/policy.conf" <<CONF
client  1.2.3.4/32      t502
client  5.6.7.8/32      t503
client  10.78.1.2/32    t503
client  0.0.0.0/0       t504
t502    *.c.a.xx.       tls     jinji.nec.com         AES-256-GCM
t503    *.x.a.xx.       tls     eigyo.nec.com         AES-128-GCM
t503    *.c.a.xx.       kernel  soumu-jinji.nec.com   AES-128-GCM
t504    *.y.a.xx.       tls     soumu.nec.com         AES-128-GCM
CONF
echo "policy policy.conf" >> "$H/b.a.xx.conf"
check "the KMS hierarchy starts on the router" start_kmsd cs5-router

verdict() {  # verdict SOURCE: the kms1:cug strings b.a.xx. gives that client for hostb.c.a.xx.
  in_ns cs5-client dig +time=3 +tries=1 -b "$1" @10.78.2.1 -p 5303 A hostb.c.a.xx. | grep -o '"kms1:cug".*'
}
v1=$(verdict 1.2.3.4); v2=$(verdict 5.6.7.8); v3=$(verdict 133.11.23.24)
check "figure 6: client 1.2.3.4 -> encrypted, tls, identity jinji.nec.com" \
  grep -q '"verdict=encrypted" "protocol=tls" "identity=jinji.nec.com"' <<<"$v1"
check "figure 6: client 5.6.7.8 -> encrypted, kernel, identity soumu-jinji.nec.com" \
  grep -q '"verdict=encrypted" "protocol=kernel" "identity=soumu-jinji.nec.com"' <<<"$v2"
check "figure 6: client 133.11.23.24 -> normal" grep -q '"verdict=normal" "protocol=" "identity=" "cipher="' <<<"$v3"
check "the verdicts are signed by b.a.xx." grep -q '"from=b.a.xx.".*"sig=' <<<"$v1"

# --- host B and host D: one web server for both addresses; B's endpoint lets A in
MARK="countersign-kernel-$RANDOM$RANDOM"
# A capture with no packet to a web port in the clear, and none carrying the page's text.
no_clear_packets() { [ "$(tcpdump -nn -r "$1" 'tcp dst port 8080' 2>/dev/null | wc -l)" -eq 0 ]; }
no_plaintext() { ! grep -a -q "$MARK" "$1"; }
mkdir -p "$WORK/www" && echo "<html><body>$MARK</body></html>" > "$WORK/www/index.html"
in_ns_background cs5-server "$WORK/http.out" python3 -m http.server 8080 --bind 0.0.0.0 --directory "$WORK/www"
cat > "$H/proxy-b-ns.conf" <<CONF
dns        10.78.2.2:5300
identity   default hostb.conf
cug        cug-b.conf
pool       10.98.0.1 4
endpoint   [::]:8443
inbound    inbound-b.conf
forward    127.0.0.1
CONF
in_ns_background cs5-server "$WORK/proxy-b.out" "$BIN/kms-proxy" "$H/proxy-b-ns.conf"
check "host B's endpoint starts" wait_for "$WORK/proxy-b.out" "^ready"

# --- the client's proxy: verdicts from its KMS, kernel diversion
cat > "$H/proxy-client.conf" <<CONF
dns             127.0.0.53:53
upstream        10.78.2.1:5303
identity        default hosta.conf
identity        soumu-jinji.nec.com hosta.conf
policy          server
pool            10.99.0.1 4
ports           8080
divert-port     15001
tunnel-port     8443
control         $WORK/run/proxy-client.control
store           $WORK/run/proxy-client.sqlite
CONF
in_ns_background cs5-client "$WORK/proxy-client.out" "$BIN/kms-proxy" "$H/proxy-client.conf"
check "the client's proxy starts with kernel diversion" wait_for "$WORK/proxy-client.out" "^ready"
check "the nftables table (inet: IPv4 and IPv6) is created at start" bash -c "ip netns exec cs5-client nft list table inet countersign >/dev/null"

# --- a CUG peer, by its real address: diverted, encrypted
start_capture cs5-router cs5-rs "$WORK/cug.pcap"; CUG_CAPTURE=$CAPTURE_PID
page=$(in_ns cs5-client curl -4 -s -m 15 http://hostb.c.a.xx.:8080/index.html)
check "unmodified curl reaches host B" grep -q "$MARK" <<<"$page"
resolved=$(in_ns cs5-client getent ahostsv4 hostb.c.a.xx. | awk 'NR==1 {print $1}')
check "the application got host B's real address" test "$resolved" = "10.78.2.2"
set_listing=$(in_ns cs5-client nft list set inet countersign peers4)
check "host B's address is in the kernel set, with a time-out" grep -q "10.78.2.2 timeout .* expires" <<<"$set_listing"
set_listing=$(in_ns cs5-client nft list set inet countersign peers6)
check "resolving its name (A) diverted host B's IPv6 address too" grep -q "2001:db8:78:2::2 timeout .* expires" <<<"$set_listing"
tunnel_packets() { tcpdump -nn -r "$WORK/cug.pcap" 'tcp dst port 8443 and tcp[tcpflags] & tcp-push != 0' 2>/dev/null | wc -l; }
for _ in $(seq 1 100); do [ "$(tunnel_packets)" -ge 3 ] && break; sleep 0.1; done
kill -TERM $CUG_CAPTURE; wait $CUG_CAPTURE 2>/dev/null
check "the traffic to host B went through the tunnel (port 8443)" test "$(tunnel_packets)" -gt 0
check "no packet went to host B's port 8080 in the clear" no_clear_packets "$WORK/cug.pcap"
check "the capture holds no plaintext of the page" no_plaintext "$WORK/cug.pcap"

# --- what the tunnel cannot carry (UDP such as QUIC, TCP to other ports) is refused, not sent in clear
start_capture cs5-router cs5-rs "$WORK/fence.pcap" "tcp or udp"; FENCE_CAPTURE=$CAPTURE_PID
send_udp() {  # send_udp ADDRESS: one datagram carrying the mark to ADDRESS port 9443
  in_ns cs5-client python3 -c "
import socket, sys
family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
try:
    s.sendto(sys.argv[2].encode(), (sys.argv[1], 9443))
except OSError as e:
    print('refused:', e)
" "$1" "$MARK"
}
send_udp 10.78.2.2; send_udp 2001:db8:78:2::2
curl_other=$(in_ns cs5-client curl -s -m 5 -o /dev/null -w '%{http_code} %{exitcode}' http://10.78.2.2:8081/ 2>&1)
# Host D is not in the group: its UDP leaves (so the capture can see UDP at all).
in_ns cs5-client python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'plain', ('10.78.2.3', 9443))"
for _ in $(seq 1 50); do [ "$(tcpdump -nn -r "$WORK/fence.pcap" 'udp and dst host 10.78.2.3' 2>/dev/null | wc -l)" -gt 0 ] && break; sleep 0.1; done
kill -TERM $FENCE_CAPTURE; wait $FENCE_CAPTURE 2>/dev/null
check "UDP to host D (not in the group) leaves as usual" test "$(tcpdump -nn -r "$WORK/fence.pcap" 'udp and dst host 10.78.2.3' 2>/dev/null | wc -l)" -gt 0
check "UDP to host B (IPv4 and IPv6) never leaves in clear" test "$(tcpdump -nn -r "$WORK/fence.pcap" 'udp and (dst host 10.78.2.2 or dst host 2001:db8:78:2::2)' 2>/dev/null | wc -l)" -eq 0
check "TCP to host B on a port the tunnel does not carry is refused at once ($curl_other)" grep -q '^000 7$' <<<"$curl_other"
check "and nothing went to that port" test "$(tcpdump -nn -r "$WORK/fence.pcap" 'tcp dst port 8081' 2>/dev/null | wc -l)" -eq 0
check "the fence capture holds no plaintext of the mark" no_plaintext "$WORK/fence.pcap"

# --- IPv6: host B's literal, then its name over IPv6: diverted, encrypted
start_capture cs5-router cs5-rs "$WORK/cug6.pcap"; CUG6_CAPTURE=$CAPTURE_PID
page=$(in_ns cs5-client curl -s -m 15 -g "http://[2001:db8:78:2::2]:8080/index.html")
check "curl to host B's IPv6 literal reaches it" grep -q "$MARK" <<<"$page"
aaaa=$(in_ns cs5-client dig +short +time=3 +tries=1 @127.0.0.53 AAAA hostb.c.a.xx.)
check "AAAA for host B is its real IPv6 address (no longer withheld)" test "$aaaa" = "2001:db8:78:2::2"
page=$(in_ns cs5-client curl -6 -s -m 15 http://hostb.c.a.xx.:8080/index.html)
check "curl -6 by name reaches host B" grep -q "$MARK" <<<"$page"
tunnel6_packets() { tcpdump -nn -r "$WORK/cug6.pcap" 'ip6 and tcp port 8443' 2>/dev/null | grep -c 'length [1-9]'; }
for _ in $(seq 1 100); do [ "$(tunnel6_packets)" -ge 6 ] && break; sleep 0.1; done
kill -TERM $CUG6_CAPTURE; wait $CUG6_CAPTURE 2>/dev/null
check "IPv6: the traffic to host B went through the tunnel over IPv6 (port 8443)" test "$(tunnel6_packets)" -gt 0
check "IPv6: no packet went to host B's port 8080 in the clear" no_clear_packets "$WORK/cug6.pcap"
check "IPv6: the capture holds no plaintext of the page" no_plaintext "$WORK/cug6.pcap"

# --- a restart keeps the diversions: an application holding host B's address stays protected
ip netns pids cs5-client | xargs -r kill -TERM
for _ in $(seq 1 100); do grep -q "^stopped" "$WORK/proxy-client.out" && break; sleep 0.1; done
in_ns_background cs5-client "$WORK/proxy-client.out" "$BIN/kms-proxy" "$H/proxy-client.conf"
check "the client's proxy starts again" wait_for "$WORK/proxy-client.out" "^ready"
restored() {  # (each listing read whole first: under pipefail, grep -q quitting early can fail the pipe)
  local v4 v6
  v4=$(in_ns cs5-client nft list set inet countersign peers4) && v6=$(in_ns cs5-client nft list set inet countersign peers6) &&
  grep -q "10.78.2.2 timeout" <<<"$v4" && grep -q "2001:db8:78:2::2 timeout" <<<"$v6"
}
check "after the restart host B's addresses are diverted again, before any DNS query" restored
start_capture cs5-router cs5-rs "$WORK/restart.pcap"; RESTART_CAPTURE=$CAPTURE_PID
page=$(in_ns cs5-client curl -s -m 15 http://10.78.2.2:8080/index.html)
check "curl to host B's address (as an application still holds it) reaches it after the restart" grep -q "$MARK" <<<"$page"
kill -TERM $RESTART_CAPTURE; wait $RESTART_CAPTURE 2>/dev/null
check "after the restart nothing went to host B's port 8080 in the clear" no_clear_packets "$WORK/restart.pcap"

# --- a peer outside the group: left untouched
start_capture cs5-router cs5-rs "$WORK/plain.pcap"; PLAIN_CAPTURE=$CAPTURE_PID
page=$(in_ns cs5-client curl -s -m 15 http://hostd.b.a.xx.:8080/index.html)
check "curl reaches host D (not in the group)" grep -q "$MARK" <<<"$page"
for _ in $(seq 1 100); do grep -a -q "$MARK" "$WORK/plain.pcap" && break; sleep 0.1; done
kill -TERM $PLAIN_CAPTURE; wait $PLAIN_CAPTURE 2>/dev/null
check "host D's traffic is left untouched: plaintext to port 8080 (so the search above can see plaintext)" \
  grep -a -q "$MARK" "$WORK/plain.pcap"

# --- clean exit removes the table
ip netns pids cs5-client | xargs -r kill -TERM
for _ in $(seq 1 100); do grep -q "^stopped" "$WORK/proxy-client.out" && break; sleep 0.1; done
check "the proxy stops cleanly" grep -q "^stopped" "$WORK/proxy-client.out"
check "the nftables table is removed on a clean exit" bash -c "! ip netns exec cs5-client nft list table inet countersign >/dev/null 2>&1"

if [ "$failed" -gt 0 ]; then
  for f in kmsd.out proxy-b.out proxy-client.out http.out; do echo "--- $f"; tail -15 "$WORK/$f"; done
fi
echo "$SCRIPT: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
