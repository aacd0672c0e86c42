#!/usr/bin/env bash
# Snapshots through files only: `echo save > ctl` on an agent waiting for input, the snapshot
# read with cat, the original killed, the snapshot restored with `cat … > /proc/spawn`, and
# the restored run answering where the original would have.
# $M is the mount point; the user running this owns /users/$AVIX_USER.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

cat > "$M/etc/avix/scripts/snapchat.yaml" <<'YAML'
apiVersion: avix/v1
kind: LlmScript
spec:
  turns:
    - text: first answer
    - text: "second answer, after: {last}"
YAML

exec 3<>"$M/proc/spawn"
printf 'agent: assistant\ngoal: talk to me\nmodel: scripted/snapchat\ninteractive: true\n\n' >&3
read -r pid <&3
exec 3>&-
wait_for "$pid" "waitingOn: input"

snaps="$M/users/$AVIX_USER/snapshots"
echo save > "$M/proc/$pid/ctl"
snap=$(ls -t "$snaps"/*.yaml | head -1)
grep -q "kind: Snapshot" "$snap"
grep -q "waitingOn: input" "$snap"
grep -q "first answer" "$snap"
[ "$(grep -c '"signal":"SIGSAVE"' "$M/proc/$pid/journal.jsonl")" = 1 ] || { echo "SIGSAVE journaled more than once" >&2; exit 1; }
echo kill > "$M/proc/$pid/ctl"
wait_for "$pid" "state: killed"

before=$(ls "$M/proc" | grep -E '^[0-9]+$' | sort -n | tail -1)
cat "$snap" > "$M/proc/spawn"
new=""
for _ in $(seq 1 200); do
  new=$(ls "$M/proc" | grep -E '^[0-9]+$' | sort -n | tail -1)
  [ "$new" != "$before" ] && break
  sleep 0.05
done
[ "$new" != "$before" ] || { echo "no process was restored" >&2; exit 1; }
wait_for "$new" "waitingOn: input"
grep -q '"signal":"SIGRESTORE"' "$M/proc/$new/journal.jsonl"
echo "input then?" > "$M/proc/$new/ctl"
for _ in $(seq 1 400); do
  grep -q "second answer, after: then?" "$M/proc/$new/journal.jsonl" && break
  sleep 0.05
done
grep -q "second answer, after: then?" "$M/proc/$new/journal.jsonl"
echo kill > "$M/proc/$new/ctl"
echo "agent snapshot: ok"
