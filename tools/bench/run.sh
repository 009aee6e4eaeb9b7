#!/usr/bin/env bash
# Runtime benchmark, tokenscale vs PyTorch on the same random LLaVA-1.5-shaped checkpoint
# (CLIP ViT-L/14-336 + 1.1B Llama), in one run; prints the JSON lines and the ratios.
# DTYPE=f32 (default), bf16 or f16: the checkpoint is written in that type and both sides run in
# it. ROUNDS=N (default 1) alternates ours and PyTorch's N times (ours, theirs, ours, theirs, …)
# and reports medians, so a machine that is busy part of the time hurts both sides alike.
# Needs a venv with torch + transformers: python3 -m venv .venv && .venv/bin/pip install -r tools/fixtures/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DTYPE=${DTYPE:-f32}
ROUNDS=${ROUNDS:-1}
DIR=${1:-/tmp/tokenscale-bench/llava-1b-$DTYPE}
OUT=/tmp/tokenscale-bench/runtime-$DTYPE
mkdir -p "$OUT"
$PY tools/bench/make_bench_model.py "$DIR" --dtype "$DTYPE"
cargo bench -q -p tokenscale-model --bench runtime --no-run 2>/dev/null
echo "machine before: $(uptime)"
: > "$OUT/ours.jsonl"
: > "$OUT/theirs.jsonl"
for round in $(seq "$ROUNDS"); do
  cargo bench -q -p tokenscale-model --bench runtime -- "$DIR" --dtype "$DTYPE" 2>/dev/null | tail -1 | tee -a "$OUT/ours.jsonl"
  $PY tools/bench/torch_runtime.py "$DIR" --dtype "$DTYPE" | tail -1 | tee -a "$OUT/theirs.jsonl"
  echo "machine after round $round: $(uptime)"
done
$PY tools/bench/runtime_ratios.py "$OUT/ours.jsonl" "$OUT/theirs.jsonl"
