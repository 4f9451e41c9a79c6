# Shared by every end-to-end script: counted checks, and waiting on a condition.
passed=0
failed=0
check() {  # check NAME COMMAND...: runs COMMAND, counts and prints ok/FAIL
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"
  fi
}
# eventually SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or time runs out.
eventually() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  until "$@"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}
# metrics_positive FILE SAMPLE...: every SAMPLE (a metric name with its labels, as the line
# starts) has a value above 0 in the Prometheus text FILE.
metrics_positive() {
  local file=$1 sample
  shift
  for sample in "$@"; do
    awk -v name="$sample" 'index($0, name) == 1 && $NF + 0 > 0 { found = 1 } END { exit !found }' "$file" || return 1
  done
}
# metrics_helped FILE FAMILY: every family in FILE has its # HELP line, FAMILY among them.
metrics_helped() {
  [ "$(grep -c '^# TYPE' "$1")" -eq "$(grep -c '^# HELP' "$1")" ] && grep -q "^# HELP $2 " "$1"
}
