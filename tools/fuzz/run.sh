#!/usr/bin/env bash
# Long fuzz runs of every input reader (CI runs 2,000 inputs per target with seed 18).
#   tools/fuzz/run.sh [INPUTS] [TARGET...]
# INPUTS per target (default 100000); TOKENSCALE_FUZZ_SEED (default: the clock, printed, so a
# run can be repeated); crashing inputs and what happened go to TOKENSCALE_FUZZ_CRASHES
# (default target/fuzz-crashes). Prints a table: target, inputs, accepted, rejected, crashes.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TOKENSCALE_FUZZ_INPUTS="${1:-100000}"
[ $# -gt 0 ] && shift
export TOKENSCALE_FUZZ_SEED="${TOKENSCALE_FUZZ_SEED:-$(date +%s)}"
export TOKENSCALE_FUZZ_CRASHES="${TOKENSCALE_FUZZ_CRASHES:-$PWD/target/fuzz-crashes}"
echo "seed $TOKENSCALE_FUZZ_SEED, $TOKENSCALE_FUZZ_INPUTS inputs per target; crashing inputs go to $TOKENSCALE_FUZZ_CRASHES"
# --workspace: the same feature set as `cargo test --release --workspace`, so its build is reused.
exec cargo test --release --workspace --test fuzz -- "$@"
