#!/usr/bin/env bash
# Runs the pjdfstest POSIX suite (../shared/tools/posix-suite.sh, upstream pjdfstest) in a data
# tree of a real daemon's mount, as root. The uids the suite switches to (65534, 65533) are
# mapped to Avix admins, so POSIX modes, not the tree rules, decide for them. Passes when every
# case passes except the known one: opening a FIFO is done by the host kernel without asking
# the daemon, so its mode is not checked for other users (docs/filesystem.md).
# POSIX_SUITE (default /work/shared/tools/posix-suite.sh) points at the runner.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE="${POSIX_SUITE:-/work/shared/tools/posix-suite.sh}"
if [ ! -x "$SUITE" ]; then
  echo "posix-suite: $SUITE not found; set POSIX_SUITE to the pjdfstest runner" >&2
  exit 1
fi
cargo build --locked -q -p avix-cli
AVIX="$PWD/target/debug/avix"
WORK="$(mktemp -d)"
ROOT="$WORK/root"; MNT="$WORK/mnt"; LOGS="$WORK/logs"
mkdir -p "$MNT"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$AVIX" server config init --root "$ROOT" --user posix --role admin --non-interactive \
  --host-uid 0 >/dev/null
# Two more admins for the uids pjdfstest switches to.
python3 - "$ROOT" <<'EOF'
import sys
root = sys.argv[1]
for path, key, uid_key in ((f"{root}/etc/users.yaml", "  - username: posix", "uid: "),
                           (f"{root}/etc/auth.conf", "  - name: posix", "uid: ")):
    s = open(path).read()
    entry = s[s.index(key):]
    for name, uid, host in (("pjd1", 1901, 65534), ("pjd2", 1902, 65533)):
        e = entry.replace("posix", name, 1)
        e = "\n".join(
            (l.split("uid:")[0] + f"uid: {uid}") if l.strip().startswith("uid:") else
            (l.split("hostUid:")[0] + f"hostUid: {host}") if l.strip().startswith("hostUid:") else l
            for l in e.splitlines()) + "\n"
        s += e
    open(path, "w").write(s)
EOF
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
"$AVIX" server start --root "$ROOT" --mount "$MNT" --port "$PORT" --log-level warn 2>"$WORK/log" &
pid=$!
for _ in $(seq 1 400); do [ -f "$MNT/proc/status.yaml" ] && break; sleep 0.02; done
[ -f "$MNT/proc/status.yaml" ] || { echo "daemon did not start"; cat "$WORK/log"; exit 1; }
echo "data I/O: $(sed -n 's/.*dataIo: //p' "$MNT/proc/status.yaml")"
DIR="$MNT/users/posix/workspace/pjd"
mkdir "$DIR" && chmod 0777 "$DIR"
POSIX_SUITE_LOGS="$LOGS" "$SUITE" "$DIR" | tee "$WORK/summary" || true
passed=$(sed -n 's/^posix-suite: \([0-9]*\) passed.*/\1/p' "$WORK/summary")
# A directory that ran no case at all (prove did not start, crashed, or timed out) is shown
# with its log and run once more on its own; no case twice is a failure, not a pass.
empty=$(awk '$2 ~ /^[0-9]+\/0$/ {print $1}' "$WORK/summary")
if [ -n "$empty" ]; then
  for d in $empty; do
    echo "posix-suite: no case ran in $d; its log ends:"; tail -n 30 "$LOGS/$d.log" || true
  done
  echo "posix-suite: running $empty once more"
  POSIX_SUITE_LOGS="$LOGS/retry" "$SUITE" "$DIR" $empty | tee "$WORK/retry" || true
  again=$(awk '$2 ~ /^[0-9]+\/0$/ {print $1}' "$WORK/retry")
  if [ -n "$again" ]; then
    echo "posix-suite: no case ran in: $again, twice (see the logs above)"; exit 1
  fi
  more=$(sed -n 's/^posix-suite: \([0-9]*\) passed.*/\1/p' "$WORK/retry")
  passed=$(( ${passed:-0} + ${more:-0} ))
  for d in $empty; do mv "$LOGS/retry/$d.log" "$LOGS/$d.log"; done
fi
if [ "${passed:-0}" -lt 8700 ]; then
  echo "posix-suite: only ${passed:-0} cases passed (8,741 expected)"; exit 1
fi
# Every failure must be the known one: another uid opening a FIFO it has no right to.
unexpected=$(grep -h '^not ok' "$LOGS"/*.log | grep -v '# TODO' \
  | grep -v -E "open pjdfstest_[0-9a-f]+ (O_RDWR|O_RDONLY,O_NONBLOCK|O_WRONLY,O_NONBLOCK)', expected EACCES, got 0" || true)
known=$(grep -h '^not ok' "$LOGS"/*.log | grep -v '# TODO' | grep -c -E "expected EACCES, got 0" || true)
if [ -n "$unexpected" ]; then
  echo "posix-suite: unexpected failures:"; echo "$unexpected"; exit 1
fi
echo "posix-suite: every case passed but $known FIFO opens by another uid (known, docs/filesystem.md)"
