#!/usr/bin/env bash
# The main job: installs what is needed, builds avix, initialises a runtime root, starts the
# daemon with its FUSE mount, and shows it working with ordinary shell tools.
#
#   scripts/demo.sh          run the tour, then stop the daemon
#   scripts/demo.sh --keep   leave the daemon running (the script prints how to stop it)
#
# Needs root (FUSE mounts) and /dev/fuse. Environment: AVIX_DEMO_ROOT (default ./.avix-demo),
# AVIX_DEMO_MOUNT (default ./mount), AVIX_PORT (default 9142). The agent runs on a real
# provider when ANTHROPIC_API_KEY, OPENAI_API_KEY or OLLAMA_HOST is set (in that order of
# preference; AVIX_DEMO_MODEL overrides), else on the scripted provider.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building avix"
cargo build --release -q -p avix-cli
AVIX="$PWD/target/release/avix"
ROOT="${AVIX_DEMO_ROOT:-$PWD/.avix-demo}"
MNT="${AVIX_DEMO_MOUNT:-$PWD/mount}"
PORT="${AVIX_PORT:-9142}"

if [ ! -f "$ROOT/etc/auth.conf" ]; then
  echo "== avix server config init --root $ROOT --user demo"
  "$AVIX" server config init --root "$ROOT" --user demo --role admin --non-interactive \
    --host-uid "$(id -u)" | tee "$ROOT.init.txt"
  # The key is shown once; the demo keeps it only for this run's ATP tour.
  DEMO_KEY=$(grep -o 'sk-avix-[A-Za-z0-9]*' "$ROOT.init.txt" | head -1)
  rm -f "$ROOT.init.txt"
elif ! grep -q -- '- "\*"' "$ROOT/etc/users.yaml" 2>/dev/null; then
  # A demo root from an older version: refresh its configuration (data is kept).
  echo "== avix server config init --root $ROOT --user demo --force"
  "$AVIX" server config init --root "$ROOT" --user demo --role admin --non-interactive \
    --host-uid "$(id -u)" --force
fi

MODEL="${AVIX_DEMO_MODEL:-}"
if [ -z "$MODEL" ]; then
  if [ -n "${ANTHROPIC_API_KEY:-}" ]; then MODEL=anthropic
  elif [ -n "${OPENAI_API_KEY:-}" ]; then MODEL=openai
  elif [ -n "${OLLAMA_HOST:-}" ]; then
    MODEL=ollama
    host="$OLLAMA_HOST"; case "$host" in http*) ;; *) host="http://$host" ;; esac
    sed -i "s|baseUrl: http://127.0.0.1:11434|baseUrl: $host|" "$ROOT/etc/llm.yaml"
  fi
fi

echo "== avix server start --root $ROOT --mount $MNT --port $PORT"
mkdir -p "$MNT" "$ROOT/logs"
"$AVIX" server start --root "$ROOT" --mount "$MNT" --port "$PORT" >>"$ROOT/logs/daemon.log" 2>&1 &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
for _ in $(seq 1 100); do
  [ -f "$MNT/proc/status.yaml" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the daemon did not start:" >&2; tail -5 "$ROOT/logs/daemon.log" >&2; exit 1
  fi
  sleep 0.05
done
[ "$keep" = 1 ] || trap stop EXIT
grep -a "ready in" "$ROOT/logs/daemon.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g'

run() { echo; echo "\$ $*"; bash -c "$*" || true; }
run "ls $MNT"
run "cat $MNT/proc/status.yaml"
run "cat $MNT/kernel/limits/agent.yaml"
run "echo 'hello from the shell' > $MNT/users/demo/workspace/hello.txt && cat $MNT/users/demo/workspace/hello.txt"
run "ls -l $MNT/users/demo/workspace"
run "cat $MNT/secrets/anything"
run "echo oops > $MNT/proc/status.yaml"
run "cp /dev/null $MNT/etc/avix/users.yaml"
run "head -8 $MNT/etc/avix/users.yaml"
run "curl -s http://127.0.0.1:$PORT/atp/health"

echo
exec 3<>"$MNT/proc/spawn"
if [ -n "$MODEL" ]; then
  echo "== an agent is a process: spawn it through /proc/spawn (provider: $MODEL)"
  echo "{\"agent\": \"assistant\", \"model\": \"$MODEL\", \"goal\": \"Write notes.md in the workspace with three short facts about Unix processes, then answer in one sentence.\"}" >&3
else
  echo "== an agent is a process: spawn it through /proc/spawn (the scripted provider plays it;"
  echo "   set ANTHROPIC_API_KEY, OPENAI_API_KEY or OLLAMA_HOST to use a real model)"
  echo "assistant Keep some notes for this demo" >&3
fi
read -r apid <&3
exec 3>&-
echo "spawned pid $apid"
for _ in $(seq 1 1200); do grep -q "state: completed\|state: failed" "$MNT/proc/$apid/status.yaml" && break; sleep 0.05; done
run "cat $MNT/proc/$apid/status.yaml"
echo; echo "\$ journal event types, in order"
sed -E 's/^[{]"seq":([0-9]+),"ts":"[^"]*","type":"([a-z_]+)".*/\1:\2/' "$MNT/proc/$apid/journal.jsonl" | paste -sd' '
run "cat $MNT/users/demo/workspace/notes.md"
run "grep -E '^  - name:|^    health:|^    problem:' $MNT/proc/services/llm/status.yaml; sed -n '/^  totals:/,/^  users:/p' $MNT/proc/services/llm/status.yaml"
run "ls $MNT/tools/fs $MNT/tools/agent"

echo
echo "== the assistant runs code in a sandbox (exec/python: workspace only, no network)"
cat > "$MNT/etc/avix/scripts/compute.yaml" <<'YAML'
apiVersion: avix/v1
kind: LlmScript
spec:
  turns:
    - toolCalls: [{name: exec/python, args: {code: "import os, socket\nprint('sum 1..100 =', sum(range(101)), '| cwd', os.getcwd())\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\nexcept OSError as e:\n    print('network:', e)"}}]
    - text: "The sandbox answered: {last}"
YAML
exec 3<>"$MNT/proc/spawn"
echo '{"agent": "assistant", "goal": "add up 1..100 in code", "model": "scripted/compute"}' >&3
read -r cpid <&3
exec 3>&-
for _ in $(seq 1 400); do grep -q "state: completed\|state: failed" "$MNT/proc/$cpid/status.yaml" && break; sleep 0.05; done
run "grep -E '^  (state|exitReason):' $MNT/proc/$cpid/status.yaml; grep -o '\"type\":\"tool_result\".*' $MNT/proc/$cpid/journal.jsonl | head -1 | cut -c1-300"

if [ -n "${DEMO_KEY:-${AVIX_API_KEY:-}}" ]; then
  echo
  echo "== the same system over ATP (avix client; the key init printed)"
  export AVIX_API_KEY="${DEMO_KEY:-$AVIX_API_KEY}" AVIX_SERVER="http://127.0.0.1:$PORT"
  run "$AVIX client connect"
  run "$AVIX client agent history --limit 3"
  run "$AVIX client agent spawn researcher --goal 'Summarise notes.md' --follow"
  run "$AVIX client session list"

  echo
  echo "== a service in Python (standard library only) serves a tool over JSON-RPC"
  run "$AVIX client service install $PWD/examples/services/echo"
  run "cat $MNT/proc/services/echo/status.yaml"
  run "ls $MNT/tools/echo $MNT/tools/exec"
  run "$AVIX client service list"
fi
echo
if [ "$keep" = 1 ]; then
  echo "The daemon keeps running (pid $pid). Stop it with: kill $pid"
else
  echo "Stopping the daemon (run with --keep to leave it running)."
fi
