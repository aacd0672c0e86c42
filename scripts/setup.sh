#!/usr/bin/env bash
# Installs what Avix needs on a Debian machine: fuse3 (for fusermount3 and the FUSE module's
# user tools), bubblewrap (the exec sandbox), a C toolchain, the pinned Rust toolchain, and for
# the tests curl, openssl, tmux, Python's websockets and Node.js (a real MCP server from npm).
# Safe to run again.
set -euo pipefail

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# Editors and tools the mount tests drive (vim edits /etc/avix in place).
command -v vim >/dev/null 2>&1 || need_apt+=(vim)
# Everyday workloads the data-tree tests run on the mount.
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
command -v make >/dev/null 2>&1 || need_apt+=(make)
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The TUI tests drive `avix tui` in tmux (send-keys, capture-pane).
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
# The ATP manual-session test speaks WebSocket from Python, as the reference README does.
/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1 || need_apt+=(python3-websockets)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Ordinary users mount through fusermount3, which opens /dev/fuse as them: Debian makes it
# 0666; some VM images leave it 0600 (root only).
if [ "$(id -u)" -eq 0 ] && [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
  chmod 0666 /dev/fuse
fi

# The exec sandbox runs as this unprivileged account when the daemon is root (the daemon
# creates it too when missing; creating it here keeps parallel test daemons from racing).
if [ "$(id -u)" -eq 0 ] && ! getent passwd avix-sandbox >/dev/null 2>&1; then
  echo "setup: creating the avix-sandbox system account" >&2
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "Avix exec sandbox" avix-sandbox
fi

# The MCP bridge is tested against the reference MCP server, from the npm registry.
MCP_DIR="$HOME/.cache/avix/mcp"
if [ ! -e "$MCP_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ]; then
  echo "setup: installing @modelcontextprotocol/server-everything into $MCP_DIR" >&2
  npm install --silent --no-audit --no-fund --prefix "$MCP_DIR" @modelcontextprotocol/server-everything@2026.8.31 >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
# rust-toolchain.toml pins the version; this fetches it if missing.
(cd "$(dirname "$0")/.." && rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install)

if [ ! -e /dev/fuse ]; then
  echo "setup: /dev/fuse is missing: load the fuse module (modprobe fuse) or run where FUSE is available" >&2
  exit 1
fi
