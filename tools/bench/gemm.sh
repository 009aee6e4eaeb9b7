#!/usr/bin/env bash
# GEMM benchmark, y = x·wᵀ on square bf16/f16 matrices: crates/kernels (cargo bench) vs PyTorch
# (tools/bench/torch_gemm.py, F.linear and a @ b) in one run. ROUNDS=N (default 3) alternates the
# two sides N times and reports medians, so a machine that is busy part of the time hurts both
# alike; the machine's load is printed around every round.
# usage: tools/bench/gemm.sh [SIZES=1024,2048,4096]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
ROUNDS=${ROUNDS:-3}
SIZES=${1:-1024,2048,4096}
OUT=/tmp/tokenscale-bench/gemm
mkdir -p "$OUT"
cargo bench -q -p tokenscale-kernels --bench gemm --no-run 2>/dev/null
: > "$OUT/ours.jsonl"
: > "$OUT/theirs.jsonl"
echo "machine before: $(uptime)"
for round in $(seq "$ROUNDS"); do
  cargo bench -q -p tokenscale-kernels --bench gemm -- --sizes "$SIZES" 2>/dev/null | tail -1 >> "$OUT/ours.jsonl"
  $PY tools/bench/torch_gemm.py --sizes "$SIZES" | tail -1 >> "$OUT/theirs.jsonl"
  echo "machine after round $round: $(uptime)"
done
$PY - "$OUT/ours.jsonl" "$OUT/theirs.jsonl" <<'PY'
import json, statistics, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
theirs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
med = lambda rows, key, n: statistics.median(r["gflops"][key][n] for r in rows)
sizes = list(ours[0]["gflops"]["bf16"].keys())
print(f"{len(ours)} round(s), medians, GFLOP/s; kernels: {ours[0]['kernels']}")
print("| type | n | tokenscale | f32 fallback | PyTorch F.linear | PyTorch a@b | ratio vs best PyTorch |\n|---|---|---|---|---|---|---|")
for t in ["bf16", "f16"]:
    for n in sizes:
        a = med(ours, t, n)
        fallback = med(ours, "bf16_portable", n) if t == "bf16" else float("nan")
        lin, mm = med(theirs, f"{t}_linear", n), med(theirs, f"{t}_matmul", n)
        print(f"| {t} | {n} | {a:.0f} | {fallback:.0f} | {lin:.0f} | {mm:.0f} | {a / max(lin, mm):.2f}x |")
PY
