# Shared by the scripts under benches/: source it after `cd` to the repository root.
#   bench_root USER [WORKDIR_TEMPLATE]  builds the release binary and initialises a runtime
#                                       root: sets AVIX, WORK, ROOT, PORT and KEY (USER's API key)
#   start_headless                      starts that daemon without a mount, waits for
#                                       /atp/health; sets pid; the EXIT trap stops it and
#                                       removes WORK

bench_root() {
  cargo build --release -q -p avix-cli
  AVIX="$PWD/target/release/avix"
  if [ -n "${2:-}" ]; then WORK="$(mktemp -d "$2")"; else WORK="$(mktemp -d)"; fi
  ROOT="$WORK/root"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$AVIX" server config init --root "$ROOT" --user "$1" --non-interactive --host-uid "$(id -u)" > "$WORK/init"
  KEY=$(grep -o 'sk-avix-[A-Za-z0-9]*' "$WORK/init" | head -1)
  pid=
}

start_headless() {
  "$AVIX" server start --root "$ROOT" --no-mount --port "$PORT" --log-level warn 2>"$WORK/log" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$WORK"' EXIT
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$PORT/atp/health" >/dev/null && return 0
    sleep 0.05
  done
  echo "the daemon did not start:" >&2
  cat "$WORK/log" >&2
  return 1
}
