#!/usr/bin/env bash
# Part two, after the daemon was killed and started again: both runs continue under new PIDs.
# The approval is asked again and runs the call once; the slow call is reported interrupted,
# not run again. Arguments: the two invocation ids, and the approval request's file before the
# restart (the request keeps its id).
set -euo pipefail
ws="$M/users/$AVIX_USER/workspace"
pid_of() { # invocation -> its new pid
  for _ in $(seq 1 200); do
    for f in "$M"/proc/[0-9]*/status.yaml; do
      grep -q "invocation: $1" "$f" 2>/dev/null && { basename "$(dirname "$f")"; return 0; }
    done
    sleep 0.05
  done
  echo "invocation $1 was not resumed" >&2; return 1
}
. "$(dirname "$0")/lib.sh"
a=$(pid_of "$1")
b=$(pid_of "$2")
wait_in "$M/proc/$a/status.yaml" "waitingOn: human-approval"
[ -e "$ws/old.txt" ]
req=$(ls "$M/proc/$a/hil/")
[ "$req" = "$3" ] || { echo "the approval request changed its id: $3 -> $req" >&2; exit 1; }
grep -q "tool: fs/delete" "$M/proc/$a/hil/$req"
echo approve > "$M/proc/$a/hil/$req"
wait_in "$M/proc/$a/status.yaml" "state: completed"
[ ! -e "$ws/old.txt" ]
grep -q '"type":"resumed"' "$M/proc/$a/journal.jsonl"
[ "$(grep -c '"type":"tool_call".*"tool":"fs/delete"' "$M/proc/$a/journal.jsonl")" = 1 ]

wait_in "$M/proc/$b/status.yaml" "state: completed"
grep -q "EINTERRUPTED" "$M/proc/$b/journal.jsonl"
[ "$(grep -c ran "$ws/runs.txt")" = 1 ]        # the interrupted call did not run again
echo "agent resume: ok"
