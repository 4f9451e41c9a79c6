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
