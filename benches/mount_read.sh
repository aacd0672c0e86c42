#!/usr/bin/env bash
# End-to-end figures through the real mount (run as root):
#  1. stat + open/read/close of a 4 KiB file, N times, through the mount and on a local
#     directory; prints microseconds per iteration and the ratio. Runs unpinned and with
#     daemon and client pinned to one CPU (a cross-vCPU wake-up costs ~60 us on small VMs).
#  2. boot to ready (the daemon's own "ready in N ms", mount included), over several starts.
#  3. an idle daemon's CPU time over 10 s and its resident memory.
# Usage: benches/mount_read.sh [N]     (default N = 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
cargo build --release -q -p avix-cli
AVIX="$PWD/target/release/avix"
WORK="$(mktemp -d)"
ROOT="$WORK/root"; MNT="$WORK/mnt"; LOCAL="$WORK/local"
mkdir -p "$MNT" "$LOCAL"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$AVIX" server config init --root "$ROOT" --user bench --non-interactive --host-uid "$(id -u)" >/dev/null

pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

start() { # $1: prefix command (e.g. "taskset -c 0")
  : > "$WORK/log"
  $1 "$AVIX" server start --root "$ROOT" --mount "$MNT" --port "$PORT" --log-level info 2>"$WORK/log" &
  pid=$!
  for _ in $(seq 1 400); do grep -q "ready in" "$WORK/log" 2>/dev/null && [ -f "$MNT/proc/status.yaml" ] && return; sleep 0.01; done
  echo "daemon did not start"; cat "$WORK/log"; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

loop="$PWD/benches/stat_read_loop.py"
head -c 4096 /dev/urandom > "$LOCAL/file"

measure() { # $1: label, $2: prefix for client and daemon
  start "$2"
  head -c 4096 /dev/urandom > "$MNT/users/bench/workspace/file"
  local m l
  m=$($2 python3 "$loop" "$MNT/users/bench/workspace/file" "$N")
  l=$($2 python3 "$loop" "$LOCAL/file" "$N")
  printf '%-22s mount %7s us/iter   local %6s us/iter   ratio %s\n' "$1" "$m" "$l" \
    "$(python3 -c "print(f'{$m/$l:.2f}x')")"
  stop
}

echo "== stat + read of a 4 KiB file, best of 3 x $N (python loop; ~0.5 us of it is python)"
measure "unpinned" ""
measure "pinned to cpu 0" "taskset -c 0"

echo "== boot to ready (daemon's own measure, mount included), 5 starts"
for i in 1 2 3 4 5; do
  start ""
  sed -n 's/.*ready in \([0-9]*\) ms.*/\1/p' "$WORK/log" | tr '\n' ' '
  stop
done
echo "ms"

echo "== idle daemon over 10 s"
start ""
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); sleep 10; t1=$(ticks)
echo "cpu time while idle: $(( (t1 - t0) * 1000 / hz )) ms in 10 s"
grep -E 'VmRSS|VmHWM' "/proc/$pid/status"
stop
