#!/usr/bin/env bash
# End to end: a stock NSD as a secondary of c.a.xx. It transfers the zone (NOTIFY, then IXFR
# or AXFR), keeps serving host B's countersigned key with every KMS stopped, and host A reads
# it with `kms fetch --via-dns` and verifies it with its trust anchor: no KMS code on the read
# path. After a rotation at the KMS, the secondary serves the new key within one NOTIFY (its
# SOA refresh is an hour, so nothing else could bring it). kdig checks the AXFR.
#
# Runs on loopback (ports 163xx); needs nsd, kdig and dig, otherwise it says why and skips.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.build/debug}
for tool in nsd kdig dig openssl; do
  command -v "$tool" >/dev/null || { echo "secondary: SKIPPED, $tool is not installed (make test installs it)"; exit 0; }
done
WORK=$(mktemp -d)
KMSD_PID=""
NSD_PID=""
cleanup() {
  [ -n "$KMSD_PID" ] && kill "$KMSD_PID" 2>/dev/null && wait "$KMSD_PID" 2>/dev/null
  [ -n "$NSD_PID" ] && kill "$NSD_PID" 2>/dev/null && wait "$NSD_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

source Tests/e2e/checks.sh

cp -r hierarchy trust "$WORK/"
mkdir -p "$WORK/run" "$WORK/nsd"
sed -i 's/127\.0\.0\.1:530\([1-4]\)/127.0.0.1:1630\1/g' "$WORK"/hierarchy/*.conf
SECRET=$(openssl rand -base64 32)
echo "hmac-sha256:xfr.c.a.xx.:$SECRET" > "$WORK/hierarchy/xfr.key"
printf 'secondary 127.0.0.1\nnotify 127.0.0.1:16399\ntransfer-key xfr.key\n' >> "$WORK/hierarchy/c.a.xx.conf"
HOSTA="$WORK/hierarchy/hosta.conf"
KMS=127.0.0.1
NSD_PORT=16399

start_kmsd() {
  "$BIN/kmsd" "$WORK"/hierarchy/{xx,a.xx,b.a.xx,c.a.xx}.conf > "$WORK/kmsd.out" 2> "$WORK/kmsd.err" &
  KMSD_PID=$!
  eventually 30 grep -q "listening on 127.0.0.1:16304" "$WORK/kmsd.out"
}
stop_kmsd() { kill "$KMSD_PID" && wait "$KMSD_PID" 2>/dev/null; KMSD_PID=""; }

# TXT strings of _kms1.hostb.c.a.xx. as SERVER:PORT serves them.
static_at() { dig +short +time=1 +tries=1 -p "$2" @"$1" TXT _kms1.hostb.c.a.xx.; }
key_of_pem() { echo "$1:$(openssl pkey -pubin -in "$2" -outform DER | base64 -w0)"; }

check "kmsd starts, c.a.xx. with a secondary and a NOTIFY target" start_kmsd
expected_b=$(key_of_pem p256 hierarchy/keys/hostb.c.a.xx.pub.pem)
check "c.a.xx. publishes host B's countersignature by xx. as zone data" \
  eventually 15 bash -c "dig +short -p 16304 @$KMS TXT _kms1.hostb.c.a.xx. | grep -q 'key=$expected_b'"

cat > "$WORK/nsd/nsd.conf" <<NSD
server:
  ip-address: 127.0.0.1
  port: $NSD_PORT
  username: ""
  zonesdir: "$WORK/nsd"
  database: ""
  pidfile: "$WORK/nsd/nsd.pid"
  xfrdfile: "$WORK/nsd/xfrd.state"
  zonelistfile: "$WORK/nsd/zone.list"
  logfile: "$WORK/nsd/nsd.log"
  verbosity: 2
remote-control:
  control-enable: no
key:
  name: xfr.c.a.xx.
  algorithm: hmac-sha256
  secret: "$SECRET"
zone:
  name: c.a.xx.
  zonefile: c.a.xx.zone
  request-xfr: 127.0.0.1@16304 xfr.c.a.xx.
  allow-notify: 127.0.0.1 NOKEY
NSD
nsd -d -c "$WORK/nsd/nsd.conf" > "$WORK/nsd.out" 2>&1 &
NSD_PID=$!
check "NSD transfers c.a.xx., signed with the TSIG key, and serves its SOA" \
  eventually 30 bash -c "dig +short -p $NSD_PORT @$KMS SOA c.a.xx. | grep -q '^kms.c.a.xx. hostmaster.c.a.xx.'"
check "NSD serves host B's static countersignature" eventually 15 bash -c "dig +short -p $NSD_PORT @$KMS TXT _kms1.hostb.c.a.xx. | grep -q 'key=$expected_b'"
check "NSD serves host B's address" test "$(dig +short -p $NSD_PORT @$KMS A hostb.c.a.xx.)" = "127.0.0.12"

axfr_whole() {
  local out
  out=$(kdig -y "hmac-sha256:xfr.c.a.xx.:$SECRET" -p 16304 @$KMS AXFR c.a.xx. 2>&1)
  grep -q "Received .* messages" <<<"$out" && [ "$(grep -c 'IN\s*SOA' <<<"$out")" -eq 2 ] \
    && grep -q "_kms1.hostb.c.a.xx." <<<"$out" && grep -q "TSIG.*NOERROR" <<<"$out" && ! grep -q ";; ERROR\|failed" <<<"$out"
}
check "kdig accepts a full AXFR, every message's TSIG verified: SOA first and last, the static records inside" axfr_whole
check "an unsigned AXFR from a listed address is refused" \
  bash -c "dig -p 16304 @$KMS AXFR c.a.xx. | grep -q 'Transfer failed'"
check "an AXFR signed with another secret is refused" \
  bash -c "kdig -y hmac-sha256:xfr.c.a.xx.:$(openssl rand -base64 32) -p 16304 @$KMS AXFR c.a.xx. 2>&1 | grep -qi 'REFUSED\|failed'"
check "an unlisted address may not transfer the zone" \
  bash -c "dig -b 127.0.0.2 -p 16304 @$KMS AXFR c.a.xx. | grep -q 'Transfer failed'"

# Every KMS stopped: the key comes from NSD alone and is verified with the anchor xx.
stop_kmsd
check "no KMS answers any more" bash -c "! dig +short +time=1 +tries=1 -p 16304 @$KMS SOA c.a.xx. | grep -q kms"
fetched=$("$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --via-dns --resolver "$KMS:$NSD_PORT" 2>"$WORK/fetch.err")
check "kms fetch --via-dns reads host B's key from NSD, verified" test "$fetched" = "$expected_b"

# A rotation at the KMS reaches the secondary with one NOTIFY.
check "kmsd starts again" start_kmsd
"$BIN/kms" keygen --out "$WORK/hostb-new" >/dev/null
"$BIN/kms" register hostb.c.a.xx. --key "$WORK/hostb-new.pub.pem" --address 127.0.0.12 --node "$WORK/hierarchy/c.a.xx.conf" >/dev/null
expected_new=$(key_of_pem ed25519 "$WORK/hostb-new.pub.pem")
check "after the rotation NSD serves the new key (NOTIFY; its refresh is an hour)" \
  eventually 20 bash -c "dig +short -p $NSD_PORT @$KMS TXT _kms1.hostb.c.a.xx. | grep -q 'key=$expected_new'"
check "and no longer the old one" bash -c "! dig +short -p $NSD_PORT @$KMS TXT _kms1.hostb.c.a.xx. | grep -q 'key=$expected_b'"
check "kms fetch --via-dns gets the new key" \
  test "$("$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --via-dns --resolver "$KMS:$NSD_PORT" 2>/dev/null)" = "$expected_new"

echo "secondary: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "--- kmsd"; tail -n 30 "$WORK/kmsd.err"
  echo "--- nsd"; tail -n 30 "$WORK/nsd/nsd.log" "$WORK/nsd.out" 2>/dev/null
fi
[ "$failed" -eq 0 ]
