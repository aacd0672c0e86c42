#!/usr/bin/env bash
# ATP under load: a real daemon (release build, no mount), and N concurrent WebSocket
# clients (the avix-client library) issuing `proc list` and, one time in ten, `proc spawn`
# for S seconds. Prints throughput, p50/p99/max latency and the error count (it must be 0),
# then the daemon's CPU time and peak memory.
# Usage: benches/atp_load.sh [SECONDS] [CLIENTS] [SPAWN_EVERY]
#        (default 60 s, 200 clients, one spawn in 10 commands; 0: lists only)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
CLIENTS="${2:-200}"
SPAWN_EVERY="${3:-10}"
cargo bench -q -p avix-server --bench atp --no-run 2>/dev/null
BENCH=$(ls -t target/release/deps/atp-* | grep -v '\.d$' | head -1)
. benches/lib.sh
bench_root load
# Room for the agents the run spawns (they end in milliseconds on the scripted provider).
sed -i 's/maxConcurrentAgents: [0-9]*/maxConcurrentAgents: 10000/' "$ROOT/etc/kernel.yaml"
sed -i 's/agents: 5$/agents: unlimited/; s/tokens: [0-9]*/tokens: unlimited/; s/sessions: [0-9]*/sessions: unlimited/' "$ROOT/etc/users.yaml"
start_headless

echo "== $CLIENTS clients, $SECS s, against the daemon on :$PORT"
AVIX_API_KEY="$KEY" "$BENCH" --load "$SECS" --clients "$CLIENTS" --spawn-every "$SPAWN_EVERY" --server "http://127.0.0.1:$PORT"
ticks=$(awk '{print $14+$15}' "/proc/$pid/stat")
hz=$(getconf CLK_TCK)
echo "daemon: $(awk -v t="$ticks" -v hz="$hz" 'BEGIN{printf "%.1f", t/hz}') s CPU; peak RSS $(awk '/VmHWM/{print $2/1024 " MiB"}' "/proc/$pid/status")"
