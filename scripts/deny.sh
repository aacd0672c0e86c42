#!/usr/bin/env bash
# Supply chain (deny.toml): licences, banned and duplicate crates, where crates come from, and
# the RustSec advisories. The advisory database is fetched from GitHub: on a machine that
# cannot reach it the advisories are reported as not checked (loudly), the rest still is.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo deny --version >/dev/null 2>&1; then
  echo "deny: installing cargo-deny" >&2
  cargo install cargo-deny --locked --version 0.20.2 >/dev/null
fi
cargo deny --log-level error check licenses bans sources
for m in fuzz/Cargo.toml; do
  cargo deny --log-level error --manifest-path "$m" check licenses sources
done
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
else
  echo "deny: WARNING: the RustSec advisory database cannot be fetched from here: advisories NOT checked" >&2
fi
