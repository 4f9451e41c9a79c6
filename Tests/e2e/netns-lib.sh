# Shared by the namespace end-to-end scripts: checks, waits, namespaces, cleanup.
# The caller sets NAMESPACES (names) and WORK (a temporary folder) before sourcing.

source Tests/e2e/checks.sh
skip() { echo "$SCRIPT: skipped: $*"; echo "$SCRIPT: 0 passed, 0 failed, 1 skipped"; exit 0; }
require_namespaces() {
  [ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
  for tool in "$@"; do command -v "$tool" >/dev/null || skip "$tool is not installed"; done
  ip netns add cs-probe-$$ 2>/dev/null || skip "this kernel or sandbox does not allow network namespaces"
  ip netns del cs-probe-$$
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
cleanup() {
  # Everything a test started runs inside one of its namespaces: stop it all there.
  for ns in $NAMESPACES; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; done
  wait 2>/dev/null
  for ns in $NAMESPACES; do ip netns del "$ns" 2>/dev/null; rm -rf "/etc/netns/$ns"; done
  rm -rf "$WORK"
}
# link NS1 IF1 ADDR1/LEN NS2 IF2 ADDR2/LEN: a veth pair between two namespaces.
link() {
  ip link add "$2" type veth peer name "$5"
  ip link set "$2" netns "$1"; ip link set "$5" netns "$4"
  in_ns "$1" ip addr add "$3" dev "$2"; in_ns "$1" ip link set "$2" up
  in_ns "$4" ip addr add "$6" dev "$5"; in_ns "$4" ip link set "$5" up
}
# The example hierarchy, copied into $WORK and moved onto ADDRESS (ports 5301-5304).
copy_hierarchy() {
  cp -r hierarchy trust "$WORK/"; mkdir -p "$WORK/run"
  sed -i "s/127\.0\.0\.1:530/$1:530/g" "$WORK"/hierarchy/*.conf
}
start_kmsd() {  # start_kmsd NS
  in_ns_background "$1" "$WORK/kmsd.out" "$BIN/kmsd" "$WORK"/hierarchy/{xx,a.xx,b.a.xx,c.a.xx}.conf --banner "$WORK/hierarchy/banner.txt"
  wait_for "$WORK/kmsd.out" "Ctrl-C stops"
}
# Starts tcpdump in NS on IF writing FILE; sets CAPTURE_PID.
start_capture() {  # start_capture NAMESPACE INTERFACE FILE [FILTER, default tcp]
  in_ns_background "$1" "$3.out" tcpdump --immediate-mode -Z root -i "$2" -U -w "$3" ${4:-tcp}
  CAPTURE_PID=$!
  wait_for "$3.out" "listening on"
}
