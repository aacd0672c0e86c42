# Helpers the tests/shell scripts share; source it with
#   . "$(dirname "$0")/lib.sh"
# $M is the mount point.

# wait_in FILE PATTERN: waits up to 20 s for PATTERN in FILE; on timeout prints FILE and fails.
wait_in() {
  for _ in $(seq 1 400); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2 || true
  return 1
}

# wait_for PID PATTERN: waits for PATTERN in the process's status.yaml.
wait_for() {
  wait_in "$M/proc/$1/status.yaml" "$2"
}
