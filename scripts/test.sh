#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy with warnings as errors, rustdoc with warnings
# as errors, all tests (unit, integration, FUSE mounts driven with shell tools, doc tests),
# the supply-chain check
# (cargo deny), the POSIX suite on the mount and every fuzz target for a fixed time. FUSE
# tests need root and /dev/fuse.
# FUZZ_SECONDS (default 15) sets the time per fuzz target; 0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo doc -D warnings (broken intra-doc links, private items in public docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
echo "== doc tests"
cargo test --locked --workspace --doc
echo "== POSIX suite (pjdfstest) in a data tree of the mount"
scripts/posix-suite.sh
echo "== supply chain (cargo deny)"
scripts/deny.sh
if [ "${FUZZ_SECONDS:-15}" != 0 ]; then
  echo "== fuzzing (${FUZZ_SECONDS:-15}s per target)"
  scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
fi
echo "== all checks passed"
