#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer with AddressSanitizer): first over
# the inputs kept in fuzz/regressions/<target> (crashes found earlier: each must pass now),
# then for SECONDS (default 20) from the seeds in fuzz/seeds/<target>. A crash fails the
# script; libFuzzer saves the input under fuzz/artifacts/<target>/. Keep it as a regression:
#   mkdir -p fuzz/regressions/T && cp fuzz/artifacts/T/crash-* fuzz/regressions/T/
# Usage: scripts/fuzz.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs="${1:-20}"
shift || true

# cargo-fuzz passes -Z flags (sanitizers) to rustc; the pinned stable toolchain accepts them
# with RUSTC_BOOTSTRAP, so no nightly is needed.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
fi

cd fuzz
cargo fuzz build -O
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
for t in "${targets[@]}"; do
  if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then
    echo "== $t: regressions"
    cargo fuzz run -O "$t" "regressions/$t" -- -runs=0
  fi
  echo "== $t: ${secs}s"
  rm -rf "artifacts/$t"
  mkdir -p "corpus/$t"
  # corpus/ (ignored by git) grows across runs on one machine; seeds/ is the committed start.
  cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)|panicked|ERROR" || true
  # The pipe above hides libFuzzer's status: a crash leaves an artifact.
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "== fuzz: all targets ran ${secs}s without a crash"
