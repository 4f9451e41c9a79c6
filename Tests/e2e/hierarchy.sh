#!/usr/bin/env bash
# End to end: the example hierarchy of `make run`, driven by `kms` and `dig` as a user would.
# The hierarchy is copied to a temporary folder and moved to ports 153xx, so it runs beside a
# `make run` without touching its stores or ports.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.build/debug}
WORK=$(mktemp -d)
KMSD_PID=""
cleanup() {
  [ -n "$KMSD_PID" ] && kill "$KMSD_PID" 2>/dev/null && wait "$KMSD_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

source Tests/e2e/checks.sh

cp -r hierarchy trust "$WORK/"
mkdir -p "$WORK/run"
sed -i 's/127\.0\.0\.1:530\([1-4]\)/127.0.0.1:1530\1/g' "$WORK"/hierarchy/*.conf

# kmsd prints the banner once every node listens; wait for it (at most 30 s).
# It starts with the soft open-file limit systemd gives services (1024), below the hard one.
# Arguments before the command (`taskset -c 0`) start it under them.
start_kmsd() {
  (ulimit -S -n 1024; exec "$@" "$BIN/kmsd" "$WORK"/hierarchy/{xx,a.xx,b.a.xx,c.a.xx}.conf --banner "$WORK/hierarchy/banner.txt" \
    --metrics 127.0.0.1:19153) > "$WORK/kmsd.out" 2> "$WORK/kmsd.err" &
  KMSD_PID=$!
  for _ in $(seq 1 300); do
    grep -q "Ctrl-C stops" "$WORK/kmsd.out" 2>/dev/null && return 0
    kill -0 "$KMSD_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
check "kmsd starts the four nodes" start_kmsd
check "kmsd says where each node listens" test "$(grep -c 'listening on 127.0.0.1:1530' "$WORK/kmsd.out")" -eq 4
# One event loop per CPU kmsd may run on (nproc counts the affinity mask, as kmsd does).
loops_line() { awk '/^loops / { print $2 }' "$WORK/kmsd.out"; }
check "kmsd serves on one event loop per CPU it may run on ($(nproc))" test "$(loops_line)" = "$(nproc)"
# A descriptor per TCP connection and per upstream query: kmsd raises its soft limit to the hard one.
open_files_raised() {
  local soft hard
  read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$KMSD_PID/limits")
  echo "     (open files: soft $soft, hard $hard, started with 1024)"
  [ "$soft" = "$hard" ]
}
check "kmsd raises its open-file limit from 1024 to the hard limit" open_files_raised

HOSTA="$WORK/hierarchy/hosta.conf"
expected_b="p256:$(openssl pkey -pubin -in hierarchy/keys/hostb.c.a.xx.pub.pem -outform DER | base64 -w0)"

fetched=$("$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --no-cache 2>"$WORK/fetch.err")
check "kms fetch prints host B's key" test "$fetched" = "$expected_b"

"$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --no-cache --trace >/dev/null 2>"$WORK/trace.err"
check "--trace shows the forward to a.xx." grep -q "b.a.xx. cache hit\|b.a.xx. cache miss; forwarding to a.xx." "$WORK/trace.err"
check "--trace shows the countersigner verified" grep -q "countersignature by xx.: verified" "$WORK/trace.err"

"$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --format json > "$WORK/fetch.json"
check "--format json names the signer" grep -q '"signer":"xx."' "$WORK/fetch.json"

"$BIN/kms" fetch nobody.c.a.xx. --host "$HOSTA" >/dev/null 2>&1
check "an unknown host exits 1 (not found)" test $? -eq 1

"$BIN/kms" fetch host.example.com. --host "$HOSTA" >/dev/null 2>&1
check "a name no anchor covers exits 5" test $? -eq 5

txt=$(dig +short +time=3 +tries=1 @127.0.0.1 -p 15303 TXT hostb.c.a.xx.)
check "dig TXT shows a kms1:answer with host B's key" grep -q "\"kms1:answer\".*\"key=$expected_b\"" <<<"$txt"

a=$(dig +short +time=3 +tries=1 @127.0.0.1 -p 15303 A hostb.c.a.xx.)
check "dig A resolves host B through the hierarchy" test "$a" = "127.0.0.12"

status=$(dig +time=3 +tries=1 @127.0.0.1 -p 15303 A www.example.com. | grep -o 'status: [A-Z]*')
check "dig for a name outside the hierarchy is REFUSED" test "$status" = "status: REFUSED"

# The zones as stock DNS tools see them: SOA and NS at each apex, RFC 2308 negative answers,
# referrals without RD, BADVERS (dig, kdig and drill: three DNS libraries, none of them ours).
soa_at_apex() {
  local out
  out=$(dig +norec +time=3 +tries=1 @127.0.0.1 -p 15304 SOA c.a.xx.)
  grep -q "flags: qr aa;" <<<"$out" && grep -qE "^c\.a\.xx\.\s+[0-9]+\s+IN\s+SOA\s+kms\.c\.a\.xx\. hostmaster\.c\.a\.xx\. [0-9]+ 3600 900 604800 60" <<<"$out"
}
check "dig: the apex of c.a.xx. has its SOA, authoritatively" soa_at_apex
check "kdig: the apex of a.xx. has its NS, with glue" \
  bash -c "kdig +norec @127.0.0.1 -p 15302 NS a.xx. | grep -q 'kms.a.xx.*A.*127.0.0.1'"
nxdomain_with_soa() {
  local out
  out=$(drill -p 15304 nothing.c.a.xx. A @127.0.0.1)
  grep -q "rcode: NXDOMAIN" <<<"$out" && grep -A2 "AUTHORITY SECTION" <<<"$out" | grep -q "IN\s*SOA"
}
check "drill: a missing name is NXDOMAIN with the SOA" nxdomain_with_soa
nodata_at_apex() {
  local out
  out=$(dig +time=3 +tries=1 @127.0.0.1 -p 15304 TXT c.a.xx.)
  grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0," <<<"$out" && grep -A1 "AUTHORITY SECTION" <<<"$out" | grep -q SOA
}
check "dig: TXT at the apex is NODATA with the SOA, not NXDOMAIN" nodata_at_apex
referral() {
  local out
  out=$(dig +norec +time=3 +tries=1 @127.0.0.1 -p 15302 A hostb.c.a.xx.)
  grep -q "flags: qr;" <<<"$out" && grep -A1 "AUTHORITY SECTION" <<<"$out" | grep -q "c.a.xx.*NS.*kms.c.a.xx."
}
check "dig +norec below a.xx. gets the delegation to c.a.xx." referral
cookie_good() {
  local out
  out=$(dig +cookie +time=3 +tries=1 @127.0.0.1 -p 15304 A hostb.c.a.xx.)
  grep -q "COOKIE: [0-9a-f]* (good)" <<<"$out"
}
check "dig +cookie: the server cookie comes back and dig calls it good (RFC 7873)" cookie_good
check "dig +edns=1 gets BADVERS" \
  bash -c "dig +edns=1 +noednsneg +time=3 +tries=1 @127.0.0.1 -p 15304 A hostb.c.a.xx. | grep -q 'status: BADVERS'"
check "a CH query is REFUSED" \
  bash -c "dig +time=3 +tries=1 @127.0.0.1 -p 15304 CH TXT version.bind. | grep -q 'status: REFUSED'"

"$BIN/kms" keygen --out "$WORK/hoste" >/dev/null
"$BIN/kms" register hoste.b.a.xx. --key "$WORK/hoste.pub.pem" --address 127.0.0.15 --node "$WORK/hierarchy/b.a.xx.conf" >/dev/null
check "kms register acknowledges" test $? -eq 0
expected_e="ed25519:$(openssl pkey -pubin -in "$WORK/hoste.pub.pem" -outform DER | base64 -w0)"
check "a registered host's key is served at once" test "$("$BIN/kms" fetch hoste.b.a.xx. --host "$HOSTA" 2>/dev/null)" = "$expected_e"

# Bulk registration from a CSV file: every host served at once; a bad line is named by file:line.
{
  echo "# name,key,addresses"
  echo "bulk1.b.a.xx.,$expected_e,127.0.0.21"
  echo "bulk2.b.a.xx.,$expected_e,127.0.0.22,::22"
} > "$WORK/hosts.csv"
check "kms register --file registers every line" \
  "$BIN/kms" register --file "$WORK/hosts.csv" --node "$WORK/hierarchy/b.a.xx.conf"
check "a host registered from the file answers A and AAAA" \
  test "$(dig +short -p 15303 @127.0.0.1 bulk2.b.a.xx. A)$(dig +short -p 15303 @127.0.0.1 bulk2.b.a.xx. AAAA)" = "127.0.0.22::22"
printf 'bulk3.b.a.xx.,%s,127.0.0.23\nbulk4.b.a.xx.,ed25519:AAAA,127.0.0.24\n' "$expected_e" > "$WORK/bad.csv"
bad_file_named() {
  local out
  out=$("$BIN/kms" register --file "$WORK/bad.csv" --node "$WORK/hierarchy/b.a.xx.conf" 2>&1)
  [ $? -eq 65 ] && [[ "$out" == "kms register: $WORK/bad.csv:2: key: "* ]] \
    && [ -z "$(dig +short -p 15303 @127.0.0.1 bulk3.b.a.xx. A)" ]
}
check "a bad line fails the batch, named by file:line, and registers none of it" bad_file_named

# kms ctl: the operator's view of a running node.
ctl_status() {
  local out
  out=$("$BIN/kms" ctl status --node "$WORK/hierarchy/b.a.xx.conf")
  grep -qE "^zone +b\.a\.xx\.$" <<<"$out" && grep -qE "^serial +[0-9]+$" <<<"$out" && grep -qE "^hosts +[0-9]+$" <<<"$out"
}
check "kms ctl status shows the zone, its serial and its hosts" ctl_status
check "kms ctl hosts PATTERN lists the matching hosts" \
  bash -c "[ \"\$('$BIN/kms' ctl hosts 'bulk*' --node '$WORK/hierarchy/b.a.xx.conf' 2>/dev/null | cut -d' ' -f1 | tr '\n' ' ')\" = 'bulk1.b.a.xx. bulk2.b.a.xx. ' ]"
check "kms ctl status --json is JSON" \
  bash -c "'$BIN/kms' ctl status --json --node '$WORK/hierarchy/b.a.xx.conf' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"ok\"] and d[\"fields\"][0]==[\"zone\",\"b.a.xx.\"]'"
removed_gone() {
  "$BIN/kms" ctl remove bulk1.b.a.xx. --node "$WORK/hierarchy/b.a.xx.conf" >/dev/null || return 1
  [ -z "$(dig +short -p 15303 @127.0.0.1 bulk1.b.a.xx. A)" ] && \
    dig -p 15303 @127.0.0.1 bulk1.b.a.xx. A | grep -q "status: NXDOMAIN"
}
check "kms ctl remove: the host's address is gone at once (NXDOMAIN)" removed_gone
check "removing it again says it is not registered (exit 65)" \
  bash -c "'$BIN/kms' ctl remove bulk1.b.a.xx. --node '$WORK/hierarchy/b.a.xx.conf' 2>&1 | grep -q 'is not registered'; [ \${PIPESTATUS[0]} -eq 65 ]"
check "kms ctl flush --all empties the key cache" \
  bash -c "'$BIN/kms' ctl flush --all --node '$WORK/hierarchy/b.a.xx.conf' | grep -q '^flushed [0-9]* cached key'"
check "kmsd --check accepts the example configuration" "$BIN/kmsd" --check "$WORK/hierarchy/c.a.xx.conf"
threads_refused() {
  local out
  out=$("$BIN/kmsd" --threads 0 "$WORK/hierarchy/c.a.xx.conf" 2>&1)
  [ $? -eq 64 ] && grep -q -- "--threads: 0 is not between 1 and 1024" <<<"$out" || { echo "$out"; return 1; }
}
check "kmsd --threads 0 is refused with a usage error (exit 64)" threads_refused
ctl_register() {
  "$BIN/kms" keygen --out "$WORK/hostz" >/dev/null &&
  "$BIN/kms" ctl register hostz.b.a.xx. --key "$WORK/hostz.pub.pem" --address 127.0.0.26 --node "$WORK/hierarchy/b.a.xx.conf" | grep -q "registered hostz.b.a.xx." &&
  test "$(dig +short -p 15303 @127.0.0.1 A hostz.b.a.xx.)" = "127.0.0.26"
}
check "kms ctl register registers, as kms register does" ctl_register
check "kms ctl conf-check accepts it too" "$BIN/kms" ctl conf-check "$WORK/hierarchy/c.a.xx.conf"
conf_check_names_the_line() {
  local out
  printf 'zone c.a.xx.\nlisten 127.0.0.1:notaport\n' > "$WORK/broken.conf"
  out=$("$BIN/kms" ctl conf-check "$WORK/broken.conf" 2>&1)
  [ $? -eq 78 ] && grep -q "broken.conf:2: listen" <<<"$out" || { echo "$out"; return 1; }
}
check "kms ctl conf-check names the file, line and directive of an error (exit 78)" conf_check_names_the_line
stats_count() {
  local out
  out=$("$BIN/kms" ctl stats --node "$WORK/hierarchy/xx.conf") || return 1
  grep -Eq '^countersignatures.issued [1-9]' <<<"$out" && grep -Eq '^log.size [1-9]' <<<"$out" && grep -Eq '^requests.sigreq [1-9]' <<<"$out"
}
check "kms ctl stats shows xx.'s counters (sigreqs, countersignatures issued, log size)" stats_count

# A host rotates its own key (DNS UPDATE signed by the current key, proof by the new one).
old_a=$(openssl pkey -in "$WORK/hierarchy/keys/hosta.b.a.xx.pem" -pubout -outform DER | base64 -w0)
rotated() {
  local out new
  out=$("$BIN/kms" rotate --host "$HOSTA") || return 1
  new=$(openssl pkey -in "$WORK/hierarchy/keys/hosta.b.a.xx.pem" -pubout -outform DER | base64 -w0)
  [ "$new" != "$old_a" ] && [ ! -e "$WORK/hierarchy/keys/hosta.b.a.xx.next.pem" ] && grep -q "$new" <<<"$out" \
    && dig +short -p 15303 @127.0.0.1 TXT hosta.b.a.xx. | grep -q "key=[a-z0-9]*:$new"
}
check "kms rotate: the home KMS serves the new key and the key files are swapped" rotated
check "host A, signing with its new key, still fetches host B's key" \
  test "$("$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --no-cache 2>/dev/null)" = "$expected_b"

# /metrics: HELP lines, queries by type, upstream latency, crypto spent, gauges, build.
curl -s -m 5 http://127.0.0.1:19153/metrics > "$WORK/metrics.txt"
M="$WORK/metrics.txt"
check "/metrics has a HELP line for every family" metrics_helped "$M" kms_requests_total
check "/metrics counts queries by type (TXT at b.a.xx.)" metrics_positive "$M" 'kms_queries_total{zone="b.a.xx.",type="TXT"}'
check "/metrics has the upstream latency histogram" metrics_positive "$M" 'kms_upstream_seconds_count{zone="b.a.xx.",outcome="answer"}'
check "/metrics counts signatures made and checked" metrics_positive "$M" kms_signatures_total kms_verifications_total
check "/metrics has the key cache size of b.a.xx." metrics_positive "$M" 'kms_key_cache_entries{zone="b.a.xx."}'
check "/metrics says which build runs" grep -q '^kms_build_info{version="[0-9.]*"} 1' "$WORK/metrics.txt"
check "kmsd logs in logfmt, values quoted" grep -q '^time="[^"]*" level="[a-z]*" logger="kmsd"' "$WORK/kmsd.err"

# The transparency log: an audited fetch, a monitor that sees every key xx. vouched for.
audited() { "$BIN/kms" fetch hostb.c.a.xx. --host "$HOSTA" --audit 2>&1 >/dev/null | grep -q "audit: in xx.'s log at index"; }
check "kms fetch --audit checks the inclusion proof in xx.'s log" audited
monitor() { "$BIN/kms" monitor hostb.c.a.xx. --host "$HOSTA" --log xx.=127.0.0.1:15301 --once "$@"; }
monitor_sees_b() { monitor --state "$WORK/monitor.json" --expect "hostb.c.a.xx.=$expected_b" | grep -q 'countersigned target="hostb.c.a.xx."'; }
check "kms monitor lists xx.'s countersignatures for host B and exits 0" monitor_sees_b
monitor_alerts() {
  local out
  out=$(monitor --expect hostb.c.a.xx.=hierarchy/keys/hostc.c.a.xx.pub.pem)
  [ $? -eq 1 ] && grep -q 'NOT THE EXPECTED KEY' <<<"$out"
}
check "kms monitor --expect with another key raises an alert (exit 1)" monitor_alerts
head_by_dig() { dig +short +tcp -p 15301 @127.0.0.1 TXT _head._kms1log.xx. | grep -q '"kms1-head" "signer=xx."'; }
check "dig reads xx.'s signed tree head" head_by_dig
proof_by_dig() { dig +tcp +ednsopt=65004 -p 15303 @127.0.0.1 TXT hostb.c.a.xx. | grep -q '"kms1-proof" "signer=xx." "index='; }
check "dig with EDNS option 65004 gets the inclusion proof beside the answer" proof_by_dig

# A crash right after an acknowledged registration loses nothing.
"$BIN/kms" keygen --out "$WORK/hostf" >/dev/null
"$BIN/kms" register hostf.c.a.xx. --key "$WORK/hostf.pub.pem" --address 127.0.0.16 --node "$WORK/hierarchy/c.a.xx.conf" >/dev/null \
  && { kill -KILL "$KMSD_PID"; wait "$KMSD_PID"; } 2>/dev/null
# Restarted on one CPU: one loop serves every node (the checks after this run against it).
check "kmsd restarts after kill -9, under taskset -c 0" start_kmsd taskset -c 0
check "under taskset -c 0 kmsd serves on one event loop" test "$(loops_line)" = 1
expected_f="ed25519:$(openssl pkey -pubin -in "$WORK/hostf.pub.pem" -outform DER | base64 -w0)"
check "a registration acknowledged before kill -9 is still served" \
  test "$("$BIN/kms" fetch hostf.c.a.xx. --host "$HOSTA" 2>/dev/null)" = "$expected_f"
monitor_extends() { monitor --state "$WORK/monitor.json" >/dev/null; }
check "after kill -9, xx.'s log extends the head the monitor kept" monitor_extends

# SIGHUP reloads (policy, registrations from the store, caches) instead of killing kmsd.
kill -HUP "$KMSD_PID"
reloaded() {
  for _ in $(seq 1 100); do
    [ "$(grep -c 'SIGHUP: reloading' "$WORK/kmsd.err")" -ge 1 ] && [ "$(grep -c 'hosts: .* read from' "$WORK/kmsd.err")" -ge 4 ] && return 0
    sleep 0.1
  done
  return 1
}
check "kmsd reloads every node on SIGHUP" reloaded
check "kmsd is still running after SIGHUP" kill -0 "$KMSD_PID"
check "after SIGHUP the nodes still answer" \
  test "$("$BIN/kms" fetch hostf.c.a.xx. --host "$HOSTA" --no-cache 2>/dev/null)" = "$expected_f"

kill -TERM "$KMSD_PID"
wait "$KMSD_PID"
code=$?
KMSD_PID=""
check "kmsd stops cleanly on SIGTERM" test "$code" -eq 0
check "kmsd says it stopped" grep -q "^stopped" "$WORK/kmsd.out"

# With the daemon stopped, kms register says so (exit 69), many times over, and never crashes
# (a promise leaked when connect() failed and stopped the debug build with exit 132).
register_refused() {
  local out code
  for _ in 1 2 3 4 5; do
    out=$("$BIN/kms" register hostg.b.a.xx. --key "$WORK/hoste.pub.pem" --node "$WORK/hierarchy/b.a.xx.conf" 2>&1)
    code=$?
    [ "$code" -eq 69 ] && grep -q "cannot reach the node at .*(is kmsd running?)" <<<"$out" || { echo "$code $out"; return 1; }
  done
}
check "kms register against a stopped kmsd says it cannot reach the node" register_refused

if [ "$failed" -gt 0 ]; then
  echo "--- kmsd stderr"; cat "$WORK/kmsd.err"
  echo "--- fetch stderr"; cat "$WORK/fetch.err" "$WORK/trace.err"
fi
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
