"""PyTorch side of tools/bench/bench7b.sh: what `tokenscale bench` measures, per vision-token
budget n, on the same checkpoint, image, prompt and thread count; one JSON line on stdout.

LLaVA (`model_type` llava): transformers' LlavaForConditionalGeneration (sdpa attention), the
`pool` reducer as crates/model/src/reducers/pool.rs does it — adaptive average pooling of the CLIP
features (layer -2, CLS dropped) *before* the projector, 2-D over the 24×24 grid when n is a
perfect square, 1-D over the token sequence otherwise, n = 576 untouched — and the prompt in the
vicuna_v1 wrapping (crates/model/src/models/llava.rs `vicuna_v1_prompt`) with n image tokens.

Query-fused model (`model_type` modeling_query_adapt_clip_llm): the plain-PyTorch restatement of
tools/fixtures/imgque/make_imgque_fixture.py (HD crops, CLIP ViT + pos-LN + merge + line feed,
query decoder, linear fusion into the Llama's QED slots; transformers' CLIPVisionModel /
LlamaModel / LlamaForCausalLM modules, sdpa), n = n_l (n_s = min(trained n_s, n_l)), the
llama-2-vision template.

Per n (after one warm-up at every n, as `tokenscale bench` does): vision_s = preprocessing +
vision tower + reduction/query decoder + projection + prompt embeddings (what `tokenscale bench`
times as vision_s); ttft_s = LLM prefill + lm_head + argmax of the first token; decode tokens/s =
(max_new_tokens − 1) / time of the remaining greedy steps (no EOS stop). Also: load_s (weights,
tokenizers, processor), vision_tower_s (the CLIP tower alone at n = full), peak RSS (ru_maxrss),
the bf16 GEMM peak of this PyTorch (F.linear, --gemm-sizes, median of 3 after a warm-up) and, after
the model is freed, the machine's memory read bandwidth on the same threads (torch.sum over a
--bandwidth-gib f32 buffer), the yardstick for decode.

usage: python tools/bench/torch_budget.py DIR --image PATH [--vision-tokens 1,64,576]
       [--max-new-tokens 32] [--repeat 1] [--threads N] [--dtype auto|bf16|f16|f32]
       [--prompt "Describe the image in detail."] [--gemm-sizes 4096] [--bandwidth-gib 1]
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
VICUNA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the human's questions.")
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
STORED = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}


def vicuna_v1_prompt(question: str) -> str:
    return f"{VICUNA_V1_SYSTEM} USER: <image>\n{question} ASSISTANT:"


def pool(feats: torch.Tensor, n: int) -> torch.Tensor:
    """crates/model/src/reducers/pool.rs `pool` on [1, L, D] patch features (the grid is √L × √L)."""
    _, length, dim = feats.shape
    if n == length:
        return feats
    side, grid = math.isqrt(n), math.isqrt(length)
    if side * side == n and grid * grid == length:
        x = feats.transpose(1, 2).reshape(1, dim, grid, grid)  # token r·g + c → [.., r, c]
        return F.adaptive_avg_pool2d(x, side).flatten(2).transpose(1, 2)  # row-major s×s
    return F.adaptive_avg_pool1d(feats.transpose(1, 2), n).transpose(1, 2)


def median(xs):
    return statistics.median(xs) if xs else None


def gemm_peak(sizes, dtype=torch.bfloat16):
    out = {}
    for n in sizes:
        x, w = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        F.linear(x, w)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            F.linear(x, w)
            times.append(time.perf_counter() - start)
        out[str(n)] = 2 * n**3 / statistics.median(times) / 1e9
    return out


def read_bandwidth(gib: float) -> float:
    """Memory read bandwidth, GB/s: torch.sum over a `gib` GiB f32 tensor (far larger than any
    cache) on the threads set, median of 5 after a warm-up; the yardstick for decode bandwidth."""
    x = torch.ones(int(gib * 2**30) // 4, dtype=torch.float32)
    x.sum()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - start)
    return x.numel() * 4 / statistics.median(times) / 1e9


def stored_dtype(config: dict) -> str:
    for key in ["dtype", "torch_dtype"]:
        if isinstance(config.get(key), str) and config[key] in STORED:
            return STORED[config[key]]
    return "f32"


# ---------------------------------------------------------------------------------------------
# LLaVA
# ---------------------------------------------------------------------------------------------

class Llava:
    def __init__(self, folder: str, dtype: torch.dtype):
        from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration
        self.model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa").eval()
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.processor = AutoImageProcessor.from_pretrained(folder)
        self.dtype = dtype
        self.image_id = self.model.config.image_token_index
        self.lm, self.head = self.model.model.language_model, self.model.lm_head
        self.full = self.model.config.image_seq_length

    def tower(self, image):
        pixel_values = self.processor(images=image, return_tensors="pt").pixel_values.to(self.dtype)
        # What LlavaModel.get_image_features does for layer -2 / "default": all layers, pick -2, drop CLS.
        out = self.model.model.vision_tower(pixel_values, output_hidden_states=True)
        return out.hidden_states[self.model.config.vision_feature_layer][:, 1:]

    def prepare(self, image, prompt: str, n: int):
        feats = pool(self.tower(image), n)
        projected = self.model.model.multi_modal_projector(feats)
        ids = self.tok(vicuna_v1_prompt(prompt)).input_ids
        at = ids.index(self.image_id)
        ids = ids[:at] + [self.image_id] * n + ids[at + 1:]
        input_ids = torch.tensor([ids])
        embeds = self.lm.embed_tokens(input_ids)
        mask = (input_ids == self.image_id).unsqueeze(-1)
        return embeds.masked_scatter(mask, projected.reshape(-1, embeds.shape[-1]).to(embeds.dtype)), len(ids)


# ---------------------------------------------------------------------------------------------
# The query-fused model (plain PyTorch, after tools/fixtures/imgque)
# ---------------------------------------------------------------------------------------------

def fixture_module():
    sys.path.insert(0, str(ROOT / "tools/fixtures/imgque"))
    threads = torch.get_num_threads()
    import make_imgque_fixture as ref  # sets 2 threads and deterministic algorithms at import
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)
    return ref


def materialize(module: torch.nn.Module, state: dict, dtype: torch.dtype, what: str) -> torch.nn.Module:
    """Loads `state` into a module built on the meta device (no random init, no f32 copy) and
    rebuilds the non-persistent buffers (RoPE inv_freq, CLIP position_ids) on the CPU."""
    missing, unexpected = module.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    if unexpected:
        raise SystemExit(f"{what}: unexpected keys {unexpected[:5]}")
    for name in missing:
        if "post_layernorm" not in name:  # the query-fused CLIP has pos_layrnorm instead
            raise SystemExit(f"{what}: missing key {name}")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LlamaRotaryEmbedding):
                setattr(parent, child_name, LlamaRotaryEmbedding(config=child.config))
    for name, p in list(module.named_parameters()):
        if p.is_meta:  # post_layernorm: unused by the query-fused model
            owner = module.get_submodule(name.rsplit(".", 1)[0])
            setattr(owner, name.rsplit(".", 1)[1], torch.nn.Parameter(torch.ones(p.shape, dtype=dtype), requires_grad=False))
    for name, b in list(module.named_buffers()):
        if b.is_meta:
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            leaf = name.rsplit(".", 1)[-1]
            if leaf != "position_ids":
                raise SystemExit(f"{what}: cannot rebuild buffer {name}")
            owner.register_buffer(leaf, torch.arange(b.shape[-1]).expand(b.shape), persistent=False)
    return module.eval()


class ImgQue:
    def __init__(self, folder: str, dtype: torch.dtype):
        from safetensors.torch import load_file
        from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, LlamaModel, PreTrainedTokenizerFast
        self.ref = ref = fixture_module()
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        iq, lc = config["imgque_config"], config["llm_config"]
        v = iq["vision_config"]
        state = {}
        index = folder / "model.safetensors.index.json"
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
        for f in files:
            state.update(load_file(str(folder / f)))
        vcfg = CLIPVisionConfig(hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
                                num_hidden_layers=v["num_hidden_layers"], num_attention_heads=v["num_attention_heads"],
                                image_size=v["image_size"], patch_size=v["patch_size"], hidden_act=v["hidden_act"],
                                layer_norm_eps=v.get("layer_norm_eps", 1e-5))
        vocab = state["imgque_backbone.imgque_model.embed_tokens.weight"].shape[0]
        h = v["hidden_size"]
        dcfg = LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=v["intermediate_size"],
                           num_hidden_layers=iq["num_hidden_layers"], num_attention_heads=h // 64,
                           num_key_value_heads=h // 64, head_dim=64, max_position_embeddings=1 << 16,
                           rope_theta=10000.0, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False)
        keep = {k: lc[k] for k in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                   "rms_norm_eps", "rope_theta", "hidden_act", "tie_word_embeddings",
                                   "bos_token_id", "eos_token_id", "pad_token_id"] if k in lc}
        lcfg = LlamaConfig(**keep)
        for c in (vcfg, dcfg, lcfg):
            c._attn_implementation = "sdpa"
        take = lambda prefix: {k[len(prefix):]: state[k] for k in state if k.startswith(prefix)}
        vp = "imgque_backbone.clip_model.vision_model."
        with torch.device("meta"):
            vision, decoder, llm = CLIPVisionModel(vcfg), LlamaModel(dcfg), LlamaForCausalLM(lcfg)
        extra = {"pos_layrnorm.weight", "pos_layrnorm.bias", "token_LF", "vision_embed_merge.weight"}
        # transformers 4 names CLIPVisionModel's parameters `vision_model.…`, transformers 5 leaves them flat.
        nest = "vision_model." if any(k.startswith("vision_model.") for k in vision.state_dict()) else ""
        self.vision = materialize(vision, {nest + k: t for k, t in take(vp).items() if k not in extra}, dtype, "vision")
        self.pos_ln = torch.nn.LayerNorm(h, eps=v.get("layer_norm_eps", 1e-5), device="meta")
        self.pos_ln.load_state_dict({"weight": state[vp + "pos_layrnorm.weight"].to(dtype),
                                     "bias": state[vp + "pos_layrnorm.bias"].to(dtype)}, assign=True)
        self.token_lf = state[vp + "token_LF"].to(dtype)
        self.merge_w = state[vp + "vision_embed_merge.weight"].to(dtype)
        self.decoder = materialize(decoder, take("imgque_backbone.imgque_model."), dtype, "query decoder")
        self.llm = materialize(llm, take("llm_backbone."), dtype, "llm")
        self.proj_w = state["fusion_backbone.imgque_proj.weight"].to(dtype)
        del state
        self.dtype = dtype
        self.lm, self.head = self.llm.model, self.llm.lm_head
        self.llm_tok = ref.load_llm_tokenizer(folder)
        self.clip_tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "clip" / "tokenizer.json"),
                                                bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                                unk_token="<|endoftext|>", pad_token="<|endoftext|>")
        self.num_crops = json.loads((folder / "preprocessor_config.json").read_text())["num_crops"]
        self.n_s = config.get("length_que_end_short", config.get("length_que_end", 8))
        self.full = config.get("length_que_end", 8)

    def crops(self, image):
        self.ref.NUM_CROPS = self.num_crops
        pixel_values, _, _ = self.ref.preprocess(image)
        return pixel_values.to(self.dtype)

    def tower(self, image):
        return self.vision(pixel_values=self.crops(image)).last_hidden_state

    def prepare(self, image, prompt: str, n: int):
        ref = self.ref
        h = self.pos_ln(self.tower(image))[:, 1:]
        k, p, d = h.shape
        s = math.isqrt(p)
        x = h.transpose(1, 2).reshape(k, d, s, s)
        x = F.conv2d(x, self.merge_w, stride=2, padding=1) + x[:, :, ::2, ::2]
        x = x.flatten(2).transpose(1, 2)
        crop_tokens = torch.cat([x, self.token_lf.expand(k, 1, d)], 1)
        messages = [{"role": "user", "content": prompt}]
        n_s = min(self.n_s, n)
        que_ids, que_tps = ref.query_sequence(self.clip_tok, messages, n, n_s, False)
        ids, tps = ref.llm_sequence(self.llm_tok, ref.llama2_vision_segments(messages), n, n_s)
        vis = crop_tokens.reshape(1, -1, d)
        row = torch.cat([vis, self.decoder.embed_tokens(que_ids[None])], 1)
        length = row.shape[1]
        dec = self.decoder(inputs_embeds=row, position_ids=torch.arange(length)[None], use_cache=False).last_hidden_state[0]
        src = dec[vis.shape[1]:][(que_tps & ref.QED_EOS) != 0]
        emb = self.lm.embed_tokens(ids[None])[0].clone()
        emb[(tps & ref.QED) != 0] = F.linear(src, self.proj_w).to(emb.dtype)
        return emb[None], int(ids.shape[0])


# ---------------------------------------------------------------------------------------------

@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--image", required=True)
    ap.add_argument("--vision-tokens", default=None, help="default: 1,64,576 (LLaVA) or 1,64,n_l (query-fused)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    ap.add_argument("--prompt", default="Describe the image in detail.")
    ap.add_argument("--gemm-sizes", default="4096", help="bf16 GEMM peak sizes ('' to skip)")
    ap.add_argument("--bandwidth-gib", type=float, default=1.0, help="buffer for the read-bandwidth test (0 to skip)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    config = json.loads((Path(args.dir) / "config.json").read_text())
    dtype_name = stored_dtype(config) if args.dtype == "auto" else args.dtype
    dtype = DTYPES[dtype_name]
    from PIL import Image
    image = Image.open(args.image).convert("RGB")
    import warnings
    import transformers
    from transformers import CLIPVisionModel, LlamaForCausalLM, LlavaForConditionalGeneration  # imports outside load_s
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    if config.get("model_type") == "modeling_query_adapt_clip_llm":
        fixture_module()

    start = time.perf_counter()
    model = ImgQue(args.dir, dtype) if config.get("model_type") == "modeling_query_adapt_clip_llm" else Llava(args.dir, dtype)
    load_s = time.perf_counter() - start
    ns = [int(s) for s in args.vision_tokens.split(",")] if args.vision_tokens else [1, 64, model.full]

    def once(n):
        t0 = time.perf_counter()
        embeds, prompt_tokens = model.prepare(image, args.prompt, n)
        t1 = time.perf_counter()
        out = model.lm(inputs_embeds=embeds, use_cache=True)
        nxt = model.head(out.last_hidden_state[:, -1:]).argmax(-1)
        t2 = time.perf_counter()
        past = out.past_key_values
        for _ in range(args.max_new_tokens - 1):
            step = model.lm(input_ids=nxt, past_key_values=past, use_cache=True)
            past = step.past_key_values
            nxt = model.head(step.last_hidden_state[:, -1:]).argmax(-1)
        t3 = time.perf_counter()
        decode = (args.max_new_tokens - 1) / (t3 - t2) if args.max_new_tokens > 1 else None
        return prompt_tokens, t1 - t0, t2 - t1, decode

    for n in ns:  # warm-up, as `tokenscale bench` does
        once(n)
    per_n = {}
    for n in ns:
        runs = [once(n) for _ in range(args.repeat)]
        per_n[str(n)] = {
            "prompt_tokens": runs[0][0],
            "vision_s": median([r[1] for r in runs]),
            "ttft_s": median([r[2] for r in runs]),
            "vision_ttft_s": median([r[1] + r[2] for r in runs]),
            "prefill_tokens_per_s": runs[0][0] / median([r[2] for r in runs]),
            "decode_tokens_per_s": median([r[3] for r in runs if r[3] is not None]),
        }
    model.tower(image)
    tower = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model.tower(image)
        tower.append(time.perf_counter() - t0)
    gemm = gemm_peak([int(s) for s in args.gemm_sizes.split(",") if s]) if args.gemm_sizes else {}
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the bandwidth buffer
    kind = "imgque" if isinstance(model, ImgQue) else "llava"
    del model
    bandwidth = read_bandwidth(args.bandwidth_gib) if args.bandwidth_gib > 0 else None
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} / transformers {transformers.__version__}",
        "kind": kind,
        "dtype": dtype_name,
        "threads": threads,
        "max_new_tokens": args.max_new_tokens,
        "repeat": args.repeat,
        "load_s": load_s,
        "vision_tower_s": median(tower),
        "per_n": per_n,
        "peak_rss_bytes": peak_rss,
        "gemm_bf16_gflops": gemm,
        "read_bandwidth_gbs": bandwidth,
    }))


if __name__ == "__main__":
    main()
