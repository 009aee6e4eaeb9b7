#!/usr/bin/env bash
# Vision-token budget benchmark at the paper's scale, tokenscale (the CLI's `bench`) vs PyTorch
# (tools/bench/torch_budget.py) on the same random checkpoint, image, prompt and threads, run
# alternately ROUNDS times (ours, theirs, ours, theirs, …; medians), then one Markdown table
# (tools/bench/bench_report.py): load time, peak RSS vs checkpoint bytes, vision, vision + TTFT per
# n, decode tokens/s, effective prefill GFLOP/s against each side's bf16 GEMM peak, decode
# bandwidth, ratios ours/PyTorch. `uptime` is printed before, between and after.
#
# env: SHAPE=7b|1b|tiny (default 7b)  KIND=llava|imgque (default llava)  ROUNDS (default 2)
#      DTYPE (checkpoint and run type, default bf16)  THREADS (default nproc)
#      NEW_TOKENS (decoded per answer, default 32)  REPEAT (per n and round, default 1)
#      NS (budgets; default 1,64,576 for LLaVA, 1,64,256 = n_l for imgque)
#      GEMM_SIZES (bf16 GEMM peak sizes, default 4096; empty to skip)
#      IMAGE (default crates/model/tests/fixtures/preprocess/astronaut.png: square, so the query-fused
#      model gets 16 + 1 crops)  DIR (checkpoint folder, default /tmp/tokenscale-bench/$KIND-$SHAPE-$DTYPE)
#      TOKENSCALE (binary; default: cargo build --release -p tokenscale-cli, then target/release/tokenscale)  PY (default .venv/bin/python)
# The checkpoint is written once (7b: ~14.1 GB LLaVA / ~15.0 GB imgque, in /tmp, never in git)
# and reused; delete DIR to rewrite it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
SHAPE=${SHAPE:-7b}
KIND=${KIND:-llava}
ROUNDS=${ROUNDS:-2}
DTYPE=${DTYPE:-bf16}
THREADS=${THREADS:-$(nproc)}
NEW_TOKENS=${NEW_TOKENS:-32}
REPEAT=${REPEAT:-1}
GEMM_SIZES=${GEMM_SIZES-4096}
IMAGE=${IMAGE:-crates/model/tests/fixtures/preprocess/astronaut.png}
BIN=${TOKENSCALE:-}
case "$KIND" in
  llava) NS=${NS:-1,64,576}; REDUCER=(--reducer pool) ;;
  imgque) NS=${NS:-1,64,256}; REDUCER=() ;;
  *) echo "KIND=$KIND: expected llava or imgque" >&2; exit 2 ;;
esac
DIR=${DIR:-/tmp/tokenscale-bench/$KIND-$SHAPE-$DTYPE}
OUT=/tmp/tokenscale-bench/bench7b-$KIND-$SHAPE-$DTYPE
rm -rf "$OUT"
mkdir -p "$OUT/images"
cp "$IMAGE" "$OUT/images/"

if [ -z "$BIN" ]; then  # build (a no-op when up to date) so a stale binary is never measured
  cargo build --release -q -p tokenscale-cli
  BIN=target/release/tokenscale
fi
$PY tools/bench/make_bench_model.py "$DIR" --kind "$KIND" --shape "$SHAPE" --dtype "$DTYPE"
DTYPE_ARG=()
HELP=$("$BIN" bench --help)
if grep -q -- '--dtype' <<< "$HELP"; then
  DTYPE_ARG=(--dtype "$DTYPE")
else
  echo "note: this tokenscale has no bench --dtype; it runs in its default type" >&2
fi
echo "machine before: $(uptime)"
GEMM_OURS=$OUT/gemm-ours.jsonl
: > "$GEMM_OURS"
if [ -n "$GEMM_SIZES" ]; then
  RAYON_NUM_THREADS=$THREADS cargo bench -q -p tokenscale-kernels --bench gemm -- --sizes "$GEMM_SIZES" --only-bf16 2>/dev/null \
    | tail -1 >> "$GEMM_OURS" || echo "note: cargo bench -p tokenscale-kernels --bench gemm failed; no GEMM peak for ours" >&2
fi
: > "$OUT/theirs.jsonl"
for round in $(seq "$ROUNDS"); do
  # ours: the CLI, timed by `tokenscale bench` itself; /usr/bin/time -v adds the process's max RSS and wall time
  RAYON_NUM_THREADS=$THREADS /usr/bin/time -v -o "$OUT/ours-$round.time" \
    "$BIN" bench --model "$DIR" --images "$OUT/images" --vision-tokens "$NS" "${REDUCER[@]}" "${DTYPE_ARG[@]}" \
    --max-new-tokens "$NEW_TOKENS" --repeat "$REPEAT" --sample 1 --out "$OUT/ours-$round" > "$OUT/ours-$round.log" 2>&1 \
    || { cat "$OUT/ours-$round.log" >&2; exit 1; }
  /usr/bin/time -v -o "$OUT/theirs-$round.time" \
    $PY tools/bench/torch_budget.py "$DIR" --image "$IMAGE" --vision-tokens "$NS" --max-new-tokens "$NEW_TOKENS" \
    --repeat "$REPEAT" --threads "$THREADS" --dtype "$DTYPE" --gemm-sizes "$GEMM_SIZES" 2> "$OUT/theirs-$round.log" \
    | tail -1 >> "$OUT/theirs.jsonl" || { cat "$OUT/theirs-$round.log" >&2; exit 1; }
  echo "machine after round $round: $(uptime)"
done
$PY tools/bench/bench_report.py --model "$DIR" --out "$OUT" --rounds "$ROUNDS" --threads "$THREADS" | tee "$OUT/report.md"
echo "machine after: $(uptime)"
