"""Ratio table for tools/bench/run.sh: medians over the rounds of each side's JSON lines.

usage: python tools/bench/runtime_ratios.py OURS.jsonl THEIRS.jsonl
"""
import json
import statistics
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main(ours_path, theirs_path):
    ours, theirs = load(ours_path), load(theirs_path)
    a = {k: median(ours, k) for k in ["vision_s", "prefill_s", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_mib"]}
    b = {k: median(theirs, k) for k in ["vision_s", "prefill_s", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_mib"]}
    a["gemm"] = statistics.median(r["gemm_f32_gflops"]["2048"] for r in ours)
    b["gemm"] = statistics.median(r["gemm_f32_gflops"]["2048"] for r in theirs)
    tokens = ours[0]["prompt_tokens"]
    print(f"dtype {ours[0].get('dtype', 'f32')}, {len(ours)} round(s), medians; ratio > 1 means tokenscale is better")
    rows = [("f32 GEMM 2048³ GFLOP/s", "gemm", True),
            ("vision tower s (1 crop)", "vision_s", False),
            (f"prefill s ({tokens} tokens)", "prefill_s", False),
            ("prefill tokens/s", "prefill_tokens_per_s", True),
            ("decode tokens/s", "decode_tokens_per_s", True),
            ("peak RSS MiB", "peak_rss_mib", False)]
    print("| measure | tokenscale | PyTorch | ratio |\n|---|---|---|---|")
    for name, key, higher in rows:
        x, y = a[key], b[key]
        print(f"| {name} | {x:.3f} | {y:.3f} | {(x / y if higher else y / x):.2f}x |")
    print(f"\nprefill time per token: tokenscale {1000 * a['prefill_s'] / tokens:.2f} ms, PyTorch {1000 * b['prefill_s'] / tokens:.2f} ms; "
          f"peak RSS tokenscale/PyTorch = {a['peak_rss_mib'] / b['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
