#!/usr/bin/env bash
# `avix client agent list` end to end, as a user runs it: a fresh process each time, on
# loopback against a real daemon (release build, no mount, 10 agents listed). Two ways:
# logging in with an API key each time, and with the token `avix client login` kept.
# Prints the median and p90 of N runs of each.
# Usage: benches/cli_latency.sh [N]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-50}"
. benches/lib.sh
bench_root bench
sed -i 's/agents: 5$/agents: unlimited/' "$ROOT/etc/users.yaml"
start_headless
export HOME="$WORK/home" AVIX_SERVER="http://127.0.0.1:$PORT"
mkdir -p "$HOME"
for i in $(seq 1 10); do
  AVIX_API_KEY="$KEY" "$AVIX" client agent spawn assistant -g "agent $i" --interactive >/dev/null
done

# time_runs LABEL ENV... : N runs of `agent list`, median and p90 in ms.
time_runs() {
  local label="$1"; shift
  python3 - "$N" "$label" "$AVIX" "$@" <<'PY'
import os, subprocess, sys, time
n, label, avix, *env = sys.argv[1:]
e = dict(os.environ)
for kv in env:
    k, _, v = kv.partition("=")
    if v: e[k] = v
    else: e.pop(k, None)
ts = []
for _ in range(int(n)):
    t = time.perf_counter()
    subprocess.run([avix, "client", "agent", "list"], env=e, check=True, stdout=subprocess.DEVNULL)
    ts.append((time.perf_counter() - t) * 1000)
ts.sort()
print(f"{label:<40} median {ts[len(ts)//2]:6.1f} ms   p90 {ts[int(len(ts)*0.9)]:6.1f} ms")
PY
}

time_runs "API key, a login per command" "AVIX_API_KEY=$KEY"
AVIX_API_KEY="$KEY" "$AVIX" client login >/dev/null
time_runs "kept token (avix client login)" "AVIX_API_KEY="
