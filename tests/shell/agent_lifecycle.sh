#!/usr/bin/env bash
# An agent's life driven through files only (bash, cat, echo, grep): spawn through
# /proc/spawn, watch status.yaml, pause, resume and kill through ctl, read the journal.
# $M is the mount point; the user running this owns /users/$AVIX_USER.
set -euo pipefail

status_of() { cat "$M/proc/$1/status.yaml"; }
. "$(dirname "$0")/lib.sh"

# A script whose first answer takes a minute: the agent stays running while we drive it.
cat > "$M/etc/avix/scripts/slow.yaml" <<'YAML'
apiVersion: avix/v1
kind: LlmScript
spec:
  turns:
    - delayMs: 60000
      text: finally
YAML

# Spawn: write the request, read back the PID on the same open file.
exec 3<>"$M/proc/spawn"
printf 'agent: assistant\ngoal: take your time\nmodel: scripted/slow\n\n' >&3   # YAML ends at an empty line
read -r pid <&3
exec 3>&-
[[ "$pid" =~ ^[0-9]+$ ]] || { echo "not a pid: $pid" >&2; exit 1; }
echo "spawned $pid"

wait_for "$pid" "state: running"
grep -q "goal: take your time" "$M/proc/$pid/status.yaml"
echo pause > "$M/proc/$pid/ctl"
wait_for "$pid" "state: paused"
echo resume > "$M/proc/$pid/ctl"
wait_for "$pid" "state: running"
echo "input and a word from the shell" > "$M/proc/$pid/ctl"
echo kill > "$M/proc/$pid/ctl"
wait_for "$pid" "state: killed"
grep -q "exitCode: 137" "$M/proc/$pid/status.yaml"

journal="$M/proc/$pid/journal.jsonl"
grep -q '"type":"spawned"' "$journal"
grep -q '"signal":"SIGPAUSE"' "$journal"
grep -q '"signal":"SIGRESUME"' "$journal"
grep -q '"type":"exit","state":"killed","code":137' "$journal"

# Commands after exit, and unknown commands, are refused.
if echo pause > "$M/proc/$pid/ctl" 2>/dev/null; then echo "ctl accepted a signal after exit" >&2; exit 1; fi
grep -q "already exited" "$M/proc/$pid/errors"

# The one-line form, and a run to completion with the default script.
exec 3<>"$M/proc/spawn"
echo "assistant keep notes" >&3
read -r pid2 <&3
exec 3>&-
wait_for "$pid2" "state: completed"
grep -q "Written by a scripted Avix agent" "$M/users/$AVIX_USER/workspace/notes.md"
echo "agent lifecycle: ok"
