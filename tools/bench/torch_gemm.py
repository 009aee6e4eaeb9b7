"""PyTorch side of the GEMM benchmark: y = x · wᵀ (F.linear, what a linear layer runs) and a @ b,
square n × n × n, bf16 and f16, median seconds → GFLOP/s; one JSON line. Same shapes and timing
protocol (one warm-up, median of 10/5/3 runs) as crates/kernels/benches/gemm.rs.

usage: python tools/bench/torch_gemm.py [--sizes 1024,2048,4096] [--threads 2]
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F


def repeats(n):
    return 10 if n <= 1024 else 5 if n <= 2048 else 3


def gflops(n, fn):
    fn()
    # GEMM_BENCH_CPU=1 (as for the Rust side) counts process CPU time instead of wall time.
    clock = time.process_time if os.environ.get("GEMM_BENCH_CPU") else time.perf_counter
    times = []
    for _ in range(repeats(n)):
        start = clock()
        fn()
        times.append(clock() - start)
    # GEMM_BENCH_MIN=1 (as for the Rust side) takes the fastest run instead of the median.
    best = min(times) if os.environ.get("GEMM_BENCH_MIN") else statistics.median(times)
    return 2 * n**3 / best / 1e9


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        for name, dtype in [("bf16", torch.bfloat16), ("f16", torch.float16)]:
            x, w = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            table.setdefault(f"{name}_linear", {})[str(n)] = gflops(n, lambda: F.linear(x, w))
            table.setdefault(f"{name}_matmul", {})[str(n)] = gflops(n, lambda: x @ w)
    print(json.dumps({"impl": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(), "gflops": table}))


if __name__ == "__main__":
    main()
