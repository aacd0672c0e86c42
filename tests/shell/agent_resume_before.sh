#!/usr/bin/env bash
# Part one of the restart test: an agent waits for approval of fs/delete, another is in the
# middle of a slow exec/shell call. Prints "<invocation of the first> <invocation of the second>".
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
cat > "$M/etc/avix/scripts/slow.yaml" <<'YAML'
apiVersion: avix/v1
kind: LlmScript
spec:
  turns:
    - toolCalls: [{name: exec/shell, args: {command: "echo ran >> runs.txt; sleep 30"}}]
    - text: "after the restart: {last}"
YAML
mkdir -p "$M/users/$AVIX_USER/bin/sleeper@1.0.0"
cat > "$M/users/$AVIX_USER/bin/sleeper@1.0.0/agent.yaml" <<'YAML'
apiVersion: avix/v1
kind: Agent
metadata: {name: sleeper, version: 1.0.0}
spec:
  tools: {required: [exec/shell]}
YAML

spawn() {
  exec 3<>"$M/proc/spawn"; echo "$1" >&3; read -r pid <&3; exec 3>&-; echo "$pid"
}
. "$(dirname "$0")/lib.sh"
a=$(spawn '{"agent": "assistant", "goal": "remove old.txt", "model": "scripted/cleanup"}')
b=$(spawn '{"agent": "sleeper", "goal": "be slow", "model": "scripted/slow"}')
wait_in "$M/proc/$a/status.yaml" "waitingOn: human-approval"
for _ in $(seq 1 400); do [ -e "$ws/runs.txt" ] && break; sleep 0.05; done
[ -e "$ws/runs.txt" ]
echo "$(sed -n 's/^  invocation: //p' "$M/proc/$a/status.yaml") $(sed -n 's/^  invocation: //p' "$M/proc/$b/status.yaml") $(ls "$M/proc/$a/hil/")"
