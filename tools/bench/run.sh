#!/usr/bin/env bash
# Runtime benchmark, tokenscale vs PyTorch on the same random LLaVA-1.5-shaped checkpoint
# (CLIP ViT-L/14-336 + 1.1B Llama, f32), in one run; prints both JSON lines and the ratios.
# Needs a venv with torch + transformers: python3 -m venv .venv && .venv/bin/pip install -r tools/fixtures/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DIR=${1:-/tmp/tokenscale-bench/llava-1b}
$PY tools/bench/make_bench_model.py "$DIR"
ours=$(cargo bench -q -p tokenscale-model --bench runtime -- "$DIR" 2>/dev/null | tail -1)
echo "$ours" > /tmp/tokenscale-bench/ours.json
theirs=$($PY tools/bench/torch_runtime.py "$DIR" | tail -1)
echo "$ours"
echo "$theirs"
$PY - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rows = [("f32 GEMM 2048³ GFLOP/s", a["gemm_f32_gflops"]["2048"], b["gemm_f32_gflops"]["2048"], True),
        ("vision tower s (1 crop)", a["vision_s"], b["vision_s"], False),
        (f"prefill tokens/s ({a['prompt_tokens']} tokens)", a["prefill_tokens_per_s"], b["prefill_tokens_per_s"], True),
        ("decode tokens/s", a["decode_tokens_per_s"], b["decode_tokens_per_s"], True)]
print("| measure | tokenscale | PyTorch | speed ratio (tokenscale/PyTorch) |\n|---|---|---|---|")
for name, x, y, higher in rows:
    print(f"| {name} | {x:.3f} | {y:.3f} | {(x / y if higher else y / x):.2f}x |")
print(f"\nprefill reaches {a['prefill_gflops']:.0f} GFLOP/s = {100 * a['prefill_gflops'] / a['gemm_f32_gflops']['2048']:.0f}% of tokenscale's measured 2048³ GEMM peak")
PY
