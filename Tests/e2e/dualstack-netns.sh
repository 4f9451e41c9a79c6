#!/usr/bin/env bash
# End to end on dual-stack and IPv6-only hosts (issue: kmsd and kms broke on any machine with a
# global IPv6 address). Two namespaces on one link, each with IPv4 and a global IPv6 address:
#
#   cs6-kms  10.79.0.1  2001:db8:79::1  ── the example hierarchy (kmsd, four nodes)
#   cs6-host 10.79.0.2  2001:db8:79::2  ── host A: kms fetch, dig, kms-proxy
#
# and a third, cs6-only, whose only IPv4 address is loopback and which has a global IPv6
# address: there glibc resolves "0.0.0.0" to an IPv4-mapped IPv6 address, which is how the
# sockets became [::ffff:127.0.0.1] and every exchange failed. Everything runs in it at once.
#
# The figure-7 fetch (host A gets host B's key, countersigned by xx.) must work over IPv4 and
# over IPv6, and the first exchange after kmsd starts must not be lost.
#
# Needs root, ip (iproute2) and dig; otherwise it says why and skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(pwd)/${BIN:-.build/debug}

SCRIPT=dualstack-netns
NAMESPACES="cs6-kms cs6-host cs6-only"
WORK=$(mktemp -d)
. Tests/e2e/netns-lib.sh
require_namespaces ip dig
trap cleanup EXIT

for ns in $NAMESPACES; do ip netns add $ns; in_ns $ns ip link set lo up; done
link cs6-kms cs6-k 10.79.0.1/24 cs6-host cs6-h 10.79.0.2/24
# nodad: the addresses are usable at once, so a lost first exchange is the software's fault.
in_ns cs6-kms ip -6 addr add 2001:db8:79::1/64 dev cs6-k nodad
in_ns cs6-host ip -6 addr add 2001:db8:79::2/64 dev cs6-h nodad

in_ns cs6-only ip link add cs6-o0 type veth peer name cs6-o1
in_ns cs6-only ip -6 addr add 2001:db8:7a::1/64 dev cs6-o0 nodad
in_ns cs6-only ip link set cs6-o0 up; in_ns cs6-only ip link set cs6-o1 up
expected_b="p256:$(openssl pkey -pubin -in hierarchy/keys/hostb.c.a.xx.pub.pem -outform DER | base64 -w0)"

# run_family LABEL ADDRESS-AS-IN-CONFIG DIG-ADDRESS PROXY-DNS-AS-IN-CONFIG PROXY-DIG-ADDRESS [KMS-NS HOST-NS]
run_family() {
  local label=$1 address=$2 dig_address=$3 kms_ns=${6:-cs6-kms} host_ns=${7:-cs6-host}
  rm -rf "$WORK/hierarchy" "$WORK/trust" "$WORK/run"
  copy_hierarchy "$address"
  start_kmsd "$kms_ns" || { cat "$WORK/kmsd.out"; check "$label: kmsd starts" false; return; }
  check "$label: kmsd listens on $address" grep -qF "listening on $address:5303" "$WORK/kmsd.out"
  # The very first exchange after start: host A -> b.a.xx. -> a.xx. -> c.a.xx. (-> xx.).
  local key
  key=$(in_ns "$host_ns" "$BIN/kms" fetch hostb.c.a.xx. --host "$WORK/hierarchy/hosta.conf" --no-cache 2>"$WORK/fetch.err")
  check "$label: first fetch after start returns host B's key" test "$key" = "$expected_b"
  [ "$key" = "$expected_b" ] || cat "$WORK/fetch.err"
  key=$(in_ns "$host_ns" "$BIN/kms" fetch hostc.c.a.xx. --host "$WORK/hierarchy/hosta.conf" --no-cache --format field 2>>"$WORK/fetch.err")
  check "$label: a second name resolves too" test -n "$key"
  local a
  a=$(in_ns "$host_ns" dig +short +time=3 +tries=1 @"$dig_address" -p 5303 A hostb.c.a.xx.)
  check "$label: dig A through the hierarchy" test "$a" = "127.0.0.12"
  # kms-proxy on host A, its upstream the home KMS over this family, its DNS on host A's
  # address of this family: a non-group name gets the real address, a group peer an
  # intercept address (its key fetched and verified over this family).
  local proxy_dns=$4
  cat > "$WORK/hierarchy/proxy-ds.conf" <<CONF
dns             $proxy_dns:5300
identity        default hosta.conf
cug             cug-a.conf
pool            127.100.0.1 16
ports           8080
intercept-bind  wildcard
CONF
  in_ns_background "$host_ns" "$WORK/proxy.out" "$BIN/kms-proxy" "$WORK/hierarchy/proxy-ds.conf"
  if wait_for "$WORK/proxy.out" "^ready"; then
    local plain peer
    plain=$(in_ns "$host_ns" dig +short +time=5 +tries=1 @"$5" -p 5300 A hosta.b.a.xx.)
    peer=$(in_ns "$host_ns" dig +short +time=5 +tries=1 @"$5" -p 5300 A hostb.c.a.xx.)
    check "$label: kms-proxy passes a non-group name through" test "$plain" = "127.0.0.11"
    check "$label: kms-proxy gives a group peer an intercept address" grep -q '^127\.100\.0\.' <<<"$peer"
  else
    cat "$WORK/proxy.out"; check "$label: kms-proxy starts" false
  fi
  for ns in $NAMESPACES; do ip netns pids "$ns" | xargs -r kill; done
  wait
}

run_family IPv4 10.79.0.1 10.79.0.1 10.79.0.2 10.79.0.2
run_family IPv6 '[2001:db8:79::1]' 2001:db8:79::1 '[2001:db8:79::2]' 2001:db8:79::2
run_family "IPv6-only host, IPv4 loopback" 127.0.0.1 127.0.0.1 127.0.0.11 127.0.0.11 cs6-only cs6-only
run_family "IPv6-only host, IPv6" '[2001:db8:7a::1]' 2001:db8:7a::1 '[2001:db8:7a::1]' 2001:db8:7a::1 cs6-only cs6-only

echo "$SCRIPT: $passed passed, $failed failed"
[ "$failed" = 0 ]
