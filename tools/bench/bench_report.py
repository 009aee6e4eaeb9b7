"""The Markdown table of tools/bench/bench7b.sh: tokenscale (`tokenscale bench` output folders
OUT/ours-R/bench.jsonl, OUT/ours-R.time from /usr/bin/time -v, OUT/gemm-ours.jsonl from
`cargo bench -p tokenscale-kernels --bench gemm`) against PyTorch (OUT/theirs.jsonl from
tools/bench/torch_budget.py), medians over rounds. Parameter counts and bytes come from the
checkpoint's safetensors headers (no torch needed).

usage: python tools/bench/bench_report.py --model DIR --out OUT [--rounds R] [--threads N]
"""
import argparse
import json
import os
import re
import statistics
import struct
from pathlib import Path

MIB = 2**20


def safetensors_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def checkpoint(model: Path):
    index = model / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    tensors = {}
    for f in files:
        for name, info in safetensors_header(model / f).items():
            a, b = info["data_offsets"]
            count = 1
            for d in info["shape"]:
                count *= d
            tensors[name] = (count, b - a)
    disk = sum((model / f).stat().st_size for f in files)
    return tensors, disk


def llm_prefixes(config: dict):
    """(transformer-layer prefix, final-norm key, lm_head key) of the LLM."""
    if config.get("model_type") == "modeling_query_adapt_clip_llm":
        return "llm_backbone.model.layers.", "llm_backbone.model.norm.weight", "llm_backbone.lm_head.weight"
    return "language_model.model.layers.", "language_model.model.norm.weight", "language_model.lm_head.weight"


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt(x, unit="", digits=3):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    return f"{x:.{digits}g}{unit}"


def count(n):
    return f"{n / 1e9:.3f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def ratio(ours, theirs):
    return "–" if ours is None or theirs is None or theirs == 0 else f"{ours / theirs:.2f}×"


def time_file(path: Path):
    """Max RSS (bytes) and wall seconds from /usr/bin/time -v."""
    if not path.exists():
        return None, None
    text = path.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    seconds = None
    if wall:
        seconds = 0.0
        for part in wall.group(1).split(":"):
            seconds = seconds * 60 + float(part)
    return (int(rss.group(1)) * 1024 if rss else None), seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    config = json.loads((args.model / "config.json").read_text())
    tensors, disk = checkpoint(args.model)
    layers, norm, head = llm_prefixes(config)
    p_layers = sum(c for k, (c, _) in tensors.items() if k.startswith(layers))
    b_layers = sum(b for k, (_, b) in tensors.items() if k.startswith(layers))
    p_all = sum(c for c, _ in tensors.values())
    # bytes of LLM weights one decode step reads: every layer, the final norm, the lm_head (the
    # embedding table only contributes one row)
    b_decode = b_layers + tensors.get(norm, (0, 0))[1] + tensors.get(head, (0, 0))[1]

    ours_dirs = sorted(p for p in args.out.glob("ours-*") if p.is_dir())
    ours_rows = [json.loads(l) for d in ours_dirs for l in (d / "bench.jsonl").read_text().splitlines() if l.strip()]
    theirs = [json.loads(l) for l in (args.out / "theirs.jsonl").read_text().splitlines() if l.strip()]
    gemm_ours = [json.loads(l) for l in (args.out / "gemm-ours.jsonl").read_text().splitlines() if l.strip()] \
        if (args.out / "gemm-ours.jsonl").exists() else []
    ours_time = [time_file(args.out / f"{d.name}.time") for d in ours_dirs]
    theirs_time = [time_file(p) for p in sorted(args.out.glob("theirs-*.time"))]
    if not ours_rows or not theirs:
        raise SystemExit(f"{args.out}: no results (ours: {len(ours_rows)} rows, PyTorch: {len(theirs)} lines)")
    ns = sorted({r["n"] for r in ours_rows} | {int(n) for t in theirs for n in t["per_n"]})
    full = max(ns)

    def ours_n(n, key):
        return med([r.get(key) for r in ours_rows if r["n"] == n])

    def theirs_n(n, key):
        return med([t["per_n"][str(n)][key] for t in theirs if str(n) in t["per_n"]])

    # load time and dtype: `tokenscale bench` writes OUT/load.json (older builds: nothing)
    loads = [json.loads((d / "load.json").read_text()) for d in ours_dirs if (d / "load.json").exists()]
    ours_load = med([l.get("load_s") for l in loads] + [r.get("load_s") for r in ours_rows])
    ours_dtype = loads[0].get("dtype", "?") if loads else "? (no load.json)"
    theirs_load = med([t.get("load_s") for t in theirs])
    ours_rss = max([r.get("peak_rss_bytes") or 0 for r in ours_rows] or [0]) or None
    ours_rss_time = med([t[0] for t in ours_time])
    theirs_rss = med([t.get("peak_rss_bytes") for t in theirs])
    theirs_rss_time = med([t[0] for t in theirs_time])
    limit = 1.15 * disk + 300 * MIB

    sizes = sorted({s for g in gemm_ours for s in g["gflops"].get("bf16", {})} |
                   {s for t in theirs for s in t.get("gemm_bf16_gflops", {})}, key=int)
    gemm_size = sizes[-1] if sizes else None
    peak_ours = med([g["gflops"]["bf16"].get(gemm_size) for g in gemm_ours]) if gemm_size else None
    peak_theirs = med([t.get("gemm_bf16_gflops", {}).get(gemm_size) for t in theirs]) if gemm_size else None

    kind = "query-fused (imgque)" if config.get("model_type") == "modeling_query_adapt_clip_llm" else "LLaVA-1.5"
    dtype = theirs[0]["dtype"] if theirs else "?"
    threads = args.threads or (theirs[0]["threads"] if theirs else "?")
    new_tokens = theirs[0]["max_new_tokens"] if theirs else "?"
    rounds = args.rounds or len(theirs)
    print(f"### {kind}, {count(p_all)} parameters ({count(p_layers)} in the LLM's layers), "
          f"{dtype}, {threads} threads, {new_tokens} new tokens, {rounds} round(s), medians\n")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?") \
        if Path("/proc/cpuinfo").exists() else "?"
    kernels = f"; tokenscale kernels: {gemm_ours[0].get('kernels')}, {gemm_ours[0].get('cpu')}" if gemm_ours else ""
    print(f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores available{kernels}\n")
    print(f"checkpoint: {args.model} ({disk / 1e9:.2f} GB, {disk / MIB:,.0f} MiB on disk); "
          f"PyTorch: {theirs[0]['impl'] if theirs else '–'}\n")
    print("| | tokenscale | PyTorch | ours / PyTorch |\n|---|---|---|---|")
    print(f"| compute dtype | {ours_dtype} | {dtype} | |")
    print(f"| load s | {fmt(ours_load)} | {fmt(theirs_load)} | {ratio(ours_load, theirs_load)} |")
    rss_ok = "–" if ours_rss is None else ("yes" if ours_rss <= limit else "**no**")
    print(f"| peak RSS MiB (VmHWM / ru_maxrss) | {fmt(ours_rss and ours_rss / MIB)} | {fmt(theirs_rss and theirs_rss / MIB)} | {ratio(ours_rss, theirs_rss)} |")
    print(f"| peak RSS MiB (/usr/bin/time) | {fmt(ours_rss_time and ours_rss_time / MIB)} | {fmt(theirs_rss_time and theirs_rss_time / MIB)} | {ratio(ours_rss_time, theirs_rss_time)} |")
    print(f"| peak RSS / checkpoint bytes | {fmt(ours_rss and ours_rss / disk)} | {fmt(theirs_rss and theirs_rss / disk)} | target ≤ 1.15× + 300 MiB = {limit / MIB:,.0f} MiB: ours {rss_ok} |")
    v_o, v_t = ours_n(full, "vision_s"), theirs_n(full, "vision_s")
    print(f"| vision + embeddings s (n = {full}) | {fmt(v_o)} | {fmt(v_t)} | {ratio(v_o, v_t)} |")
    tower = med([t.get("vision_tower_s") for t in theirs])
    print(f"| CLIP tower alone s | – | {fmt(tower)} | |")
    for n in ns:
        a = med([r["vision_s"] + r["ttft_s"] for r in ours_rows if r["n"] == n])
        b = theirs_n(n, "vision_ttft_s")
        pt_o, pt_t = ours_n(n, "prompt_tokens"), theirs_n(n, "prompt_tokens")
        tokens = f"{pt_o:.0f}" if pt_o == pt_t or pt_t is None else f"{fmt(pt_o)} vs {fmt(pt_t)} (differ!)"
        print(f"| vision + TTFT s, n = {n} ({tokens} prompt tokens) | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    for n in ns:
        a, b = ours_n(n, "ttft_s"), theirs_n(n, "ttft_s")
        print(f"| TTFT (prefill) s, n = {n} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    d_o = med([r.get("decode_tokens_per_s") for r in ours_rows])
    d_t = med([theirs_n(n, "decode_tokens_per_s") for n in ns])
    print(f"| decode tokens/s (all n) | {fmt(d_o)} | {fmt(d_t)} | {ratio(d_o, d_t)} |")
    for n in ns:
        t_o, t_t = ours_n(n, "ttft_s"), theirs_n(n, "ttft_s")
        tokens = ours_n(n, "prompt_tokens") or theirs_n(n, "prompt_tokens")
        g_o = 2 * p_layers * tokens / t_o / 1e9 if t_o else None
        g_t = 2 * p_layers * theirs_n(n, "prompt_tokens") / t_t / 1e9 if t_t else None
        of = lambda g, p: "" if g is None or not p else f" ({100 * g / p:.0f} % of peak)"
        print(f"| prefill GFLOP/s, n = {n} | {fmt(g_o)}{of(g_o, peak_ours)} | {fmt(g_t)}{of(g_t, peak_theirs)} | {ratio(g_o, g_t)} |")
    if gemm_size:
        print(f"| bf16 GEMM peak GFLOP/s ({gemm_size}³) | {fmt(peak_ours)} | {fmt(peak_theirs)} | {ratio(peak_ours, peak_theirs)} |")
    bw_o = b_decode * d_o / 1e9 if d_o else None
    bw_t = b_decode * d_t / 1e9 if d_t else None
    machine = med([t.get("read_bandwidth_gbs") for t in theirs])
    of_bw = lambda bw: "" if bw is None or not machine else f" ({100 * bw / machine:.0f} % of read bandwidth)"
    print(f"| decode bandwidth GB/s | {fmt(bw_o)}{of_bw(bw_o)} | {fmt(bw_t)}{of_bw(bw_t)} | {ratio(bw_o, bw_t)} |")
    if machine:
        print(f"| memory read bandwidth GB/s (torch.sum of a 1 GiB f32 buffer, same threads) | {fmt(machine)} | (same machine) | |")
    print()
    print(f"Formulas: prefill GFLOP/s = 2 · P · T / TTFT with P = {count(p_layers)} parameters in the LLM's "
          f"transformer layers (embeddings, lm_head and attention scores not counted) and T the prompt tokens; "
          f"decode bandwidth = {b_decode / MIB:,.1f} MiB (the LLM's layers, final norm and lm_head: weights read per "
          f"token, KV cache not counted) × decode tokens/s. Times: vision = preprocessing + vision tower + "
          f"reduction (LLaVA `pool`) or query decoder (imgque) + projection + prompt embeddings; TTFT = prefill + "
          f"first token. Ratios are ours / PyTorch: below 1 is better for times and RSS, above 1 for rates. "
          + (f"The GEMM peaks are y = x·wᵀ, bf16, {gemm_size}³, same threads (ours: cargo bench -p tokenscale-kernels "
             f"--bench gemm; PyTorch: F.linear in the same process as its model)." if gemm_size else ""))


if __name__ == "__main__":
    main()
