#!/usr/bin/env bash
# Cost of a 7-point n-sweep relative to a single point (issue target: ≤ 2.5×), on the generated
# synthetic benchmark with a fixture model. Image work that does not depend on n is shared
# across the sweep; the summary lines show how much of it there was.
# usage: tools/bench/sweep_ratio.sh [MODEL_DIR] [REDUCER] [ITEMS]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-crates/model/tests/fixtures/llava}
REDUCER=${2:-pool}
ITEMS=${3:-20}
cargo build -q --release -p tokenscale-cli -p tokenscale-eval --bins
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./target/release/tokenscale-sweep-harness gen "$tmp/synth" 7 "$ITEMS" >/dev/null
data=(--data "$tmp/synth/SYNTH_MCQ.tsv" --data "$tmp/synth/SYNTH_YORN.tsv")
red=()
[ -n "$REDUCER" ] && red=(--reducer "$REDUCER")
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>"$tmp/err"; local e=$(date +%s.%N); tail -1 "$tmp/err" >&2; echo "$e - $s" | bc; }
one=$(t ./target/release/tokenscale eval --model "$MODEL" "${data[@]}" --vision-tokens 64 "${red[@]}" --out "$tmp/one")
seven=$(t ./target/release/tokenscale eval --model "$MODEL" "${data[@]}" --vision-tokens 1,2,4,8,16,32,64 "${red[@]}" --out "$tmp/seven")
echo "single point (n=64): ${one}s; 7 points (1..64): ${seven}s; ratio $(echo "scale=2; $seven / $one" | bc)x"
