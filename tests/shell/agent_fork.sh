#!/usr/bin/env bash
# Fork and diff through files and the CLI: an agent writes notes over three turns; `fork 1`
# on its ctl file gives a new agent whose workspace copy is the workspace as of turn 1 (seen
# with cat on the mount, under /users/<u>/forks/), while the parent's workspace keeps its
# later changes; `avix client agent diff` lists exactly what each run changed.
# $M is the mount point; $AVIX is the binary, AVIX_SERVER and AVIX_API_KEY its login.
set -euo pipefail
trap 'echo "failed at line $LINENO: $BASH_COMMAND" >&2' ERR

. "$(dirname "$0")/lib.sh"

# The CLI, logged in by AVIX_SERVER and AVIX_API_KEY (AVIX_USER would name a password login).
client() { env -u AVIX_USER "$AVIX" client "$@"; }

ws="$M/users/$AVIX_USER/workspace"
echo "draft" > "$ws/plan.md"
cat > "$M/etc/avix/scripts/forkme.yaml" <<'YAML'
apiVersion: avix/v1
kind: LlmScript
spec:
  turns:
    - toolCalls:
        - {name: fs/write, args: {path: notes.md, content: "turn one"}}
    - toolCalls:
        - {name: fs/write, args: {path: notes.md, content: "turn two"}}
        - {name: fs/write, args: {path: plan.md, content: "final"}}
    - text: done
YAML

exec 3<>"$M/proc/spawn"
printf 'agent: assistant\ngoal: take notes\nmodel: scripted/forkme\n\n' >&3
read -r pid <&3
exec 3>&-
wait_for "$pid" "state: completed"
[ "$(cat "$ws/notes.md")" = "turn two" ]
grep -q '"type":"workspace"' "$M/proc/$pid/journal.jsonl"

# The parent's diff: notes.md added, plan.md modified.
diff <(client agent diff "$pid" 2>/dev/null) <(printf 'A notes.md\nM plan.md\n')
diff <(client agent diff "$pid" --at 1 2>/dev/null) <(printf 'A notes.md\n')

# Fork at turn 1 through the ctl file; the new PID is the reply.
exec 3<>"$M/proc/$pid/ctl"
echo "fork 1" >&3
read -r child <&3
exec 3>&-
[ -n "$child" ] && [ "$child" != "$pid" ]
wait_for "$child" "state: completed"
grep -q '"type":"forked"' "$M/proc/$child/journal.jsonl"
copy=$(ls -d "$M/users/$AVIX_USER/forks"/assistant-* | head -1)
# The fork redid turn 2 in its copy; the copy started as turn 1 left it.
[ "$(cat "$copy/notes.md")" = "turn two" ]
[ "$(cat "$copy/plan.md")" = "final" ]
diff <(client agent diff "$child" 2>/dev/null) <(printf 'M notes.md\nM plan.md\n')

# A fork at turn 0 with the CLI, naming the run by its invocation id: its copy is the
# workspace as it was before the run (plan.md "draft", no notes.md), then its own turns.
inv=$(sed -n 's/^ *invocation: *//p' "$M/proc/$pid/status.yaml")
[ -n "$inv" ]
zero=$(client agent fork "$inv" --at 0 --goal "start over")
wait_for "$zero" "state: completed"
diff <(client agent diff "$zero" 2>/dev/null) <(printf 'A notes.md\nM plan.md\n')
[ "$(client agent diff "$zero" --at 0 2>/dev/null)" = "" ]

# A turn the run never reached is refused, with the reason readable from the same file.
exec 3<>"$M/proc/$pid/ctl"
if echo "fork 9" >&3 2>/dev/null; then echo "fork 9 was accepted" >&2; exit 1; fi
exec 3>&-
grep -q "there is no turn 9" "$M/proc/$pid/errors"
echo "agent fork: ok"
