#!/usr/bin/env bash
# Human approval through files: a gated tool call waits, `approve` written to its request
# file lets it run exactly once, a second answer is refused.
set -euo pipefail
ws="$M/users/$AVIX_USER/workspace"
echo "to be removed" > "$ws/old.txt"
cat > "$M/etc/avix/scripts/cleanup.yaml" <<'YAML'
apiVersion: avix/v1
kind: LlmScript
spec:
  turns:
    - toolCalls: [{name: fs/delete, args: {path: old.txt}}]
    - text: cleaned up
YAML

exec 3<>"$M/proc/spawn"
echo '{"agent": "assistant", "goal": "remove old.txt", "model": "scripted/cleanup"}' >&3
read -r pid <&3
exec 3>&-

for _ in $(seq 1 400); do
  grep -q "waitingOn: human-approval" "$M/proc/$pid/status.yaml" && break
  sleep 0.05
done
grep -q "waitingOn: human-approval" "$M/proc/$pid/status.yaml"
[ -e "$ws/old.txt" ]                              # not deleted before approval
req=$(ls "$M/proc/$pid/hil/")
grep -q "tool: fs/delete" "$M/proc/$pid/hil/$req"
grep -q "state: pending" "$M/proc/$pid/hil/$req"

echo approve > "$M/proc/$pid/hil/$req"
if echo deny > "$M/proc/$pid/hil/$req" 2>/dev/null; then echo "a second answer was accepted" >&2; exit 1; fi
grep -q "state: approved" "$M/proc/$pid/hil/$req"

for _ in $(seq 1 400); do
  grep -q "state: completed" "$M/proc/$pid/status.yaml" && break
  sleep 0.05
done
grep -q "state: completed" "$M/proc/$pid/status.yaml"
[ ! -e "$ws/old.txt" ]                            # ran once approved
[ "$(grep -c '"type":"tool_call","callId":"call-1-1","tool":"fs/delete"' "$M/proc/$pid/journal.jsonl")" = 1 ]
grep -q '"type":"hil_answered".*"outcome":"approved","by":"'"$AVIX_USER"'"' "$M/proc/$pid/journal.jsonl"
echo "agent hil: ok"
