#!/usr/bin/env bash
# End to end: the figure-7 hierarchy with every KMS on its own host. Each of the four KMSs runs
# in its own network namespace on port 53 of its own address, host A and host B in theirs, all
# joined by routed links through a router namespace; a stock NSD plays the DNS root and
# delegates xx. to its KMS, so plain `dig +trace` walks the referrals down to host B.
#
#   cs-root 10.90.7.2 (NSD ".")   cs-xx 10.90.1.2   cs-axx 10.90.2.2   cs-baxx 10.90.3.2
#   cs-caxx 10.90.4.2             cs-hosta 10.90.5.2                   cs-hostb 10.90.6.2
#   each 10.90.N.2/24 <-> cs-router 10.90.N.1, default route via the router
#
# Checks: the signed fetch from host A, countersigned by xx.; dig +trace; a stopped KMS named in
# the SERVFAIL within the time-out; recovery after its restart.
# Needs root, ip, dig, nsd; otherwise it says why and skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
SCRIPT=nodes-netns
BIN=$(pwd)/${BIN:-.build/debug}
WORK=$(mktemp -d)
NAMESPACES="cs-router cs-root cs-xx cs-axx cs-baxx cs-caxx cs-hosta cs-hostb"
source Tests/e2e/netns-lib.sh
require_namespaces ip dig nsd openssl
trap cleanup EXIT

# --- the network: one router, a routed /24 per host
for ns in $NAMESPACES; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
in_ns cs-router sysctl -qw net.ipv4.ip_forward=1
declare -A NET=([cs-xx]=1 [cs-axx]=2 [cs-baxx]=3 [cs-caxx]=4 [cs-hosta]=5 [cs-hostb]=6 [cs-root]=7)
for ns in "${!NET[@]}"; do
  n=${NET[$ns]}
  link cs-router "r$n" "10.90.$n.1/24" "$ns" "h$n" "10.90.$n.2/24"
  in_ns "$ns" ip route add default via "10.90.$n.1"
done

# --- the hierarchy: each KMS on port 53 of its own address
cp -r hierarchy trust "$WORK/"; mkdir -p "$WORK/run"
sed -i -e 's/127\.0\.0\.1:5301/10.90.1.2:53/g' -e 's/127\.0\.0\.1:5302/10.90.2.2:53/g' \
       -e 's/127\.0\.0\.1:5303/10.90.3.2:53/g' -e 's/127\.0\.0\.1:5304/10.90.4.2:53/g' "$WORK"/hierarchy/*.conf
# The NSDs next to the root may transfer every KMS zone.
for zone in xx. a.xx. b.a.xx. c.a.xx.; do echo "secondary 10.90.7.0/24" >> "$WORK/hierarchy/${zone}conf"; done
declare -A ZONE_NS=([xx.]=cs-xx [a.xx.]=cs-axx [b.a.xx.]=cs-baxx [c.a.xx.]=cs-caxx)
start_node() {  # start_node ZONE: its own kmsd in its own namespace
  local ns=${ZONE_NS[$1]}
  in_ns_background "$ns" "$WORK/$1out" "$BIN/kmsd" "$WORK/hierarchy/$1conf"
  eval "PID_${ns//-/_}=\$!"
  wait_for "$WORK/$1out" "listening on"
}
for zone in xx. a.xx. b.a.xx. c.a.xx.; do
  check "the KMS of $zone serves on its own host" start_node "$zone"
done
check "host A reaches the KMS of c.a.xx. through the router" \
  bash -c "ip netns exec cs-hosta dig +short +time=2 +tries=1 @10.90.4.2 SOA c.a.xx. | grep -q kms.c.a.xx."

# --- the DNS root: a stock NSD (10.90.7.2) delegating xx. to its KMS. dig +trace looks up name
# server addresses with the stub resolver, not from glue, so host A's stub resolver is a second
# NSD (10.90.7.3) holding a copy of every KMS zone, transferred from each KMS host.
in_ns cs-root ip addr add 10.90.7.3/24 dev h7
nsd_conf() {  # nsd_conf DIR ADDRESS
  mkdir -p "$1"
  cat > "$1/nsd.conf" <<NSD
server:
  ip-address: $2
  port: 53
  username: ""
  zonesdir: "$1"
  database: ""
  pidfile: "$1/nsd.pid"
  xfrdfile: "$1/xfrd.state"
  zonelistfile: "$1/zone.list"
  logfile: "$1/nsd.log"
remote-control:
  control-enable: no
NSD
}
nsd_conf "$WORK/root" 10.90.7.2
cat > "$WORK/root/root.zone" <<'ZONE'
$ORIGIN .
$TTL 3600
.          IN SOA ns.root. hostmaster.root. 1 3600 900 604800 60
.          IN NS  ns.root.
ns.root.   IN A   10.90.7.2
xx.        IN NS  kms.xx.
kms.xx.    IN A   10.90.1.2
ZONE
printf 'zone:\n  name: "."\n  zonefile: root.zone\n' >> "$WORK/root/nsd.conf"
nsd_conf "$WORK/stub" 10.90.7.3
cat > "$WORK/stub/root.zone" <<'ZONE'
$ORIGIN root.
$TTL 3600
@    IN SOA ns.root. hostmaster.root. 1 3600 900 604800 60
@    IN NS  ns.root.
ns   IN A   10.90.7.2
ZONE
printf 'zone:\n  name: "root."\n  zonefile: root.zone\n' >> "$WORK/stub/nsd.conf"
for zone in xx. a.xx. b.a.xx. c.a.xx.; do
  n=${NET[${ZONE_NS[$zone]}]}
  printf 'zone:\n  name: "%s"\n  zonefile: "%szone"\n  request-xfr: 10.90.%s.2@53 NOKEY\n' "$zone" "$zone" "$n" >> "$WORK/stub/nsd.conf"
done
in_ns_background cs-root "$WORK/root.out" nsd -d -c "$WORK/root/nsd.conf"
in_ns_background cs-root "$WORK/stub.out" nsd -d -c "$WORK/stub/nsd.conf"
mkdir -p /etc/netns/cs-hosta
echo "nameserver 10.90.7.3" > /etc/netns/cs-hosta/resolv.conf
root_answers() { in_ns cs-hosta dig +short +time=1 +tries=1 @10.90.7.2 NS . | grep -q ns.root; }
for _ in $(seq 1 100); do root_answers && break; sleep 0.1; done
check "NSD serves the root and delegates xx." root_answers
copies() {
  local zone
  for zone in xx. a.xx. b.a.xx. c.a.xx.; do
    in_ns cs-hosta dig +short +time=1 +tries=1 @10.90.7.3 A "kms.$zone" | grep -q '^10\.90\.' || return 1
  done
}
for _ in $(seq 1 300); do copies && break; sleep 0.1; done
check "a second NSD holds a copy of every KMS zone (AXFR from each KMS host)" copies

trace_reaches_b() {
  local out
  out=$(in_ns cs-hosta dig +trace +tries=1 +time=2 @10.90.7.2 A hostb.c.a.xx.)
  grep -qE "^hostb\.c\.a\.xx\.\s+[0-9]+\s+IN\s+A\s+127\.0\.0\.12" <<<"$out" && grep -q "from 10.90.4.2#53" <<<"$out" \
    && grep -q "from 10.90.1.2#53" <<<"$out" && grep -q "from 10.90.2.2#53" <<<"$out"
}
check "dig +trace walks . -> xx. -> a.xx. -> c.a.xx. to host B's address" trace_reaches_b
delv_answers() {
  local out
  out=$(in_ns cs-hosta delv -i @10.90.2.2 hostb.c.a.xx. A 2>&1)
  echo "     (delv: $(tr '\n' ' ' <<<"$out" | cut -c1-160))"
  grep -qE "hostb\.c\.a\.xx\.\s+[0-9]+\s+IN\s+A\s+127\.0\.0\.12" <<<"$out"
}
check "delv (validation off: these zones are unsigned) gets host B's address, not confused" delv_answers
check "every KMS sets AA only on its own data (the final answer)" \
  bash -c "ip netns exec cs-hosta dig +norec @10.90.4.2 A hostb.c.a.xx. | grep -q 'flags: qr aa;'"

# --- keys across hosts
HOSTA="$WORK/hierarchy/hosta.conf"
key_field() {  # the KMS1 key field of a PEM public key
  local alg=p256
  openssl pkey -pubin -in "$1" -noout -text | grep -q ED25519 && alg=ed25519
  echo "$alg:$(openssl pkey -pubin -in "$1" -outform DER | base64 -w0)"
}
expected_b=$(key_field hierarchy/keys/hostb.c.a.xx.pub.pem)
fetch_json=$(in_ns cs-hosta "$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --no-cache --format json 2>"$WORK/fetch.err")
check "host A fetches host B's key across four KMS hosts" grep -q "\"key\":\"$expected_b\"" <<<"$fetch_json"
check "the key is countersigned by xx." grep -q '"signer":"xx."' <<<"$fetch_json"

# A stopped KMS: named in the SERVFAIL, within the time-out (b.a.xx. waits 3 s, host A 5 s).
kill "$PID_cs_caxx"; wait "$PID_cs_caxx" 2>/dev/null
stopped_named() {
  local started out status
  started=$(date +%s%N)
  out=$(in_ns cs-hosta "$BIN/kms" fetch hostc.c.a.xx. --host "$HOSTA" --no-cache 2>&1)
  status=$?
  local elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
  echo "     ($elapsed ms: $out)"
  [ "$status" -eq 3 ] && grep -q "c.a.xx. (10.90.4.2:53)" <<<"$out" && [ "$elapsed" -lt 5000 ]
}
check "with c.a.xx.'s KMS stopped, the SERVFAIL names it within the time-out" stopped_named
check "the KMS of c.a.xx. restarts" start_node c.a.xx.
expected_c=$(key_field hierarchy/keys/hostc.c.a.xx.pub.pem)
recovered() {
  local out
  out=$(in_ns cs-hosta "$BIN/kms" fetch hostc.c.a.xx. --host "$HOSTA" --no-cache 2>&1)
  echo "     ($out)"
  [ "$out" = "$expected_c" ]
}
check "after the restart host C's key arrives again" recovered

echo "$SCRIPT: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  for f in "$WORK"/*out "$WORK/fetch.err"; do echo "--- $f"; tail -n 15 "$f"; done
fi
[ "$failed" -eq 0 ]
