"""Writes a random-weight checkpoint for speed benchmarks, with the tiny fixture tokenizers (ids
stay far below the vocab).

Without --shape (what tools/bench/run.sh uses): a LLaVA-1.5-shaped model, CLIP ViT-L/14-336 + a
~1.1B Llama (TinyLlama shapes: hidden 2048, 22 layers, 32 heads, 4 KV heads), built with
transformers and saved in the llava-hf layout; f32, or with --dtype bf16/f16 in that type (the
same seed, so the 16-bit weights are the f32 ones rounded).

With --shape 7b|1b|tiny: written **tensor by tensor, shard by shard**, never building the model
(a 7B model in f32 needs 28 GiB): every tensor is drawn directly in --dtype (default bf16) from
its own seeded generator (seed = crc32(name) ^ --seed; N(0, 0.02), norm weights 1 + N(0, 0.02)),
shards of about --shard-gb GB (default 3) saved with safetensors.torch.save_file, plus
model.safetensors.index.json and config.json.

  --kind llava (default): LLaVA-1.5 in the llava-hf layout (`language_model.model.layers.N.…`,
    `language_model.lm_head.weight`, `vision_tower.vision_model.…`,
    `multi_modal_projector.linear_1/2`), config.json as transformers' LlavaConfig writes it,
    tokenizer/preprocessor of crates/model/tests/fixtures/llava (image token 500).
    7b = LLaVA-1.5-7B: CLIP ViT-L/14-336 (1024 hidden, 24 layers, 16 heads, 4096 inter,
    quick_gelu), projector 1024→4096→4096 (gelu), Llama hidden 4096, 32 layers, 32 heads,
    32 KV heads, inter 11008, vocab 32064. 1b = the TinyLlama LLM above. tiny = a few MB
    (CLIP 64 hidden / 2 layers at 336 px, so still 576 tokens; Llama 128 hidden / 2 layers).
  --kind imgque: the paper's query-fused model (ImageMultiQueryCLIPLLMModel, HD) in its published
    layout (`imgque_backbone.clip_model.vision_model.…` with pos_layrnorm / token_LF /
    vision_embed_merge, `imgque_backbone.imgque_model.…` query decoder, `llm_backbone.…`,
    `fusion_backbone.imgque_proj.weight`), config.json as tools/fixtures/imgque writes it,
    n_l = 256, n_s = 8, num_crops = 16 (16 + 1 crops of 336 px), CLIP tokenizer in clip/ and the
    LLM tokenizer of crates/model/tests/fixtures/imgque. 7b = CLIP ViT-L/14-336, query decoder
    1024 hidden / 4096 inter / 16 heads / --decoder-layers (default 12, the config default),
    vocab 49408 + 255 placeholders, Llama-2-7B (4096 hidden, 32 layers, 32 heads, vocab 32000).
    tiny = a few MB with the same token counts (n_l 256, 16 + 1 crops of 145 tokens).

usage: python tools/bench/make_bench_model.py OUT_DIR [--dtype f32|bf16|f16]
       python tools/bench/make_bench_model.py OUT_DIR --shape 7b|1b|tiny [--kind llava|imgque]
              [--dtype bf16] [--shard-gb 3] [--decoder-layers 12] [--seed 0]
"""
import argparse
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "crates/model/tests/fixtures/llava"
IMGQUE_FIXTURE = ROOT / "crates/model/tests/fixtures/imgque"

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
TORCH_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


# ---------------------------------------------------------------------------------------------
# Legacy path (no --shape): the 1.1B model built with transformers, as tools/bench/run.sh uses it.
# ---------------------------------------------------------------------------------------------

def legacy(out: Path, dtype: str) -> None:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    if (out / "model.safetensors").exists():
        print(f"{out}: exists")
        return
    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, hidden_act="quick_gelu", projection_dim=768)
    text = LlamaConfig(vocab_size=32064, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                       num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=500, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu", image_seq_length=576)
    model = LlavaForConditionalGeneration(config).float().eval().to(DTYPES[dtype])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    for name in ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]:
        shutil.copy(FIXTURE / name, out / name)
    # transformers 5 writes the vision tower flat; llava-hf checkpoints nest it under vision_model.
    from safetensors.torch import load_file, save_file
    for f in out.glob("*.safetensors"):
        t = load_file(str(f))
        t = {(k.replace("vision_tower.", "vision_tower.vision_model.", 1)
              if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.") else k): v
             for k, v in t.items()}
        save_file(t, str(f), metadata={"format": "pt"})
    print(f"{out}: written")


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------

CLIP_L336 = dict(hidden=1024, layers=24, heads=16, inter=4096, image=336, patch=14)
CLIP_TINY = dict(hidden=64, layers=2, heads=2, inter=128, image=336, patch=14)
LLAMA = {
    # LLaVA-1.5-7B's Vicuna-7B (llava-hf: vocab 32064 with <image> and padding)
    "7b": dict(hidden=4096, layers=32, heads=32, kv=32, inter=11008, vocab=32064),
    "1b": dict(hidden=2048, layers=22, heads=32, kv=4, inter=5632, vocab=32064),
    "tiny": dict(hidden=128, layers=2, heads=4, kv=4, inter=256, vocab=32064),
}
LLAMA2_7B = dict(hidden=4096, layers=32, heads=32, kv=32, inter=11008, vocab=32000)

# The query-fused model's published budget and crops.
N_L, N_S, NUM_CROPS = 256, 8, 16
CLIP_VOCAB = 49408  # OpenAI CLIP's BPE vocab; the decoder adds n_l - 1 placeholders


def clip_tensors(prefix: str, c: dict, post_layernorm: bool) -> list:
    h, i, p = c["hidden"], c["inter"], c["patch"]
    positions = (c["image"] // p) ** 2 + 1
    t = [(prefix + "embeddings.class_embedding", (h,)),
         (prefix + "embeddings.patch_embedding.weight", (h, 3, p, p)),
         (prefix + "embeddings.position_embedding.weight", (positions, h)),
         (prefix + "pre_layrnorm.weight", (h,)), (prefix + "pre_layrnorm.bias", (h,))]
    for n in range(c["layers"]):
        lp = f"{prefix}encoder.layers.{n}."
        for proj in ["k_proj", "v_proj", "q_proj", "out_proj"]:
            t += [(f"{lp}self_attn.{proj}.weight", (h, h)), (f"{lp}self_attn.{proj}.bias", (h,))]
        t += [(lp + "layer_norm1.weight", (h,)), (lp + "layer_norm1.bias", (h,)),
              (lp + "mlp.fc1.weight", (i, h)), (lp + "mlp.fc1.bias", (i,)),
              (lp + "mlp.fc2.weight", (h, i)), (lp + "mlp.fc2.bias", (h,)),
              (lp + "layer_norm2.weight", (h,)), (lp + "layer_norm2.bias", (h,))]
    if post_layernorm:
        t += [(prefix + "post_layernorm.weight", (h,)), (prefix + "post_layernorm.bias", (h,))]
    return t


def llama_tensors(model: str, head: str | None, c: dict) -> list:
    """`model` prefixes embed_tokens / layers / norm; `head` the lm_head (None: tied)."""
    h, i, v = c["hidden"], c["inter"], c["vocab"]
    kv = h // c["heads"] * c["kv"]
    t = [(model + "embed_tokens.weight", (v, h))]
    for n in range(c["layers"]):
        lp = f"{model}layers.{n}."
        t += [(lp + "self_attn.q_proj.weight", (h, h)), (lp + "self_attn.k_proj.weight", (kv, h)),
              (lp + "self_attn.v_proj.weight", (kv, h)), (lp + "self_attn.o_proj.weight", (h, h)),
              (lp + "mlp.gate_proj.weight", (i, h)), (lp + "mlp.up_proj.weight", (i, h)),
              (lp + "mlp.down_proj.weight", (h, i)),
              (lp + "input_layernorm.weight", (h,)), (lp + "post_attention_layernorm.weight", (h,))]
    t.append((model + "norm.weight", (h,)))
    if head is not None:
        t.append((head + "lm_head.weight", (v, h)))
    return t


def llava_spec(shape: str):
    v = CLIP_TINY if shape == "tiny" else CLIP_L336
    l = LLAMA[shape]
    tensors = clip_tensors("vision_tower.vision_model.", v, post_layernorm=True)
    tensors += [("multi_modal_projector.linear_1.weight", (l["hidden"], v["hidden"])),
                ("multi_modal_projector.linear_1.bias", (l["hidden"],)),
                ("multi_modal_projector.linear_2.weight", (l["hidden"], l["hidden"])),
                ("multi_modal_projector.linear_2.bias", (l["hidden"],))]
    tensors += llama_tensors("language_model.model.", "language_model.", l)
    return tensors, v, l


def imgque_spec(shape: str, decoder_layers: int):
    v = CLIP_TINY if shape == "tiny" else CLIP_L336
    l = LLAMA["tiny"] if shape == "tiny" else LLAMA2_7B if shape == "7b" else dict(LLAMA["1b"], vocab=32000)
    h = v["hidden"]
    vocab = (300 if shape == "tiny" else CLIP_VOCAB) + N_L - 1
    vp = "imgque_backbone.clip_model.vision_model."
    tensors = clip_tensors(vp, v, post_layernorm=False)
    tensors += [(vp + "pos_layrnorm.weight", (h,)), (vp + "pos_layrnorm.bias", (h,)),
                (vp + "token_LF", (1, 1, h)), (vp + "vision_embed_merge.weight", (h, h, 3, 3))]
    dec = dict(hidden=h, layers=decoder_layers, heads=h // 64, kv=h // 64, inter=v["inter"], vocab=vocab)
    tensors += llama_tensors("imgque_backbone.imgque_model.", None, dec)
    tensors += llama_tensors("llm_backbone.model.", "llm_backbone.", l)
    tensors.append(("fusion_backbone.imgque_proj.weight", (l["hidden"], h)))
    return tensors, v, l, dec


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

def llava_config(v: dict, l: dict, dtype: str) -> str:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    vision = CLIPVisionConfig(hidden_size=v["hidden"], intermediate_size=v["inter"], num_hidden_layers=v["layers"],
                              num_attention_heads=v["heads"], image_size=v["image"], patch_size=v["patch"],
                              hidden_act="quick_gelu", projection_dim=768, layer_norm_eps=1e-5)
    text = LlamaConfig(vocab_size=l["vocab"], hidden_size=l["hidden"], intermediate_size=l["inter"],
                       num_hidden_layers=l["layers"], num_attention_heads=l["heads"], num_key_value_heads=l["kv"],
                       max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=500, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         image_seq_length=(v["image"] // v["patch"]) ** 2, tie_word_embeddings=False)
    config.architectures = ["LlavaForConditionalGeneration"]
    config.dtype = DTYPES[dtype]
    return config.to_json_string(use_diff=True)


def imgque_config(v: dict, l: dict, dec: dict, dtype: str, clip_vocab: int) -> str:
    """The published layout, as tools/fixtures/imgque/make_imgque_fixture.py writes it."""
    h = v["hidden"]
    vision_cfg = dict(model_type="clip_vision_hd", hidden_size=h, intermediate_size=v["inter"],
                      num_hidden_layers=v["layers"], num_attention_heads=v["heads"], num_channels=3,
                      image_size=v["image"], patch_size=v["patch"], hidden_act="quick_gelu", layer_norm_eps=1e-5,
                      attention_dropout=0.0, enable_local_merge=True, enable_token_crlf=True,
                      vembed_merge_kernel_size=3, vembed_merge_stride=2, vembed_hidden_size=h)
    # The CLIP tokenizer in clip/ is the tiny fixture one: <|startoftext|> 298, <|endoftext|> 299 (= pad).
    text_cfg = dict(model_type="clip_text_model", vocab_size=clip_vocab, bos_token_id=298, eos_token_id=299,
                    pad_token_id=299)
    iq = dict(model_type="modeling_image_hd_multi_query_clip", num_hidden_layers=dec["layers"],
              max_position_embeddings=2048, length_que_end=N_L, length_que_end_short=N_S,
              append_special_padding=True, vocab_size=dec["vocab"], hidden_size=h,
              vision_config=vision_cfg, text_config=text_cfg)
    llm = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=l["vocab"], hidden_size=l["hidden"],
               intermediate_size=l["inter"], num_hidden_layers=l["layers"], num_attention_heads=l["heads"],
               num_key_value_heads=l["kv"], max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
               rope_scaling=None, hidden_act="silu", attention_bias=False, mlp_bias=False,
               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=3,
               torch_dtype=TORCH_NAMES[dtype])
    cfg = dict(architectures=["ImageMultiQueryCLIPLLMModel"], model_type="modeling_query_adapt_clip_llm",
               imgque_config=iq, llm_config=llm, fusion_name="img_multi_que_clip_fusion_linear",
               hidden_size=l["hidden"], length_que_end=N_L, length_que_end_short=N_S, append_special_padding=True,
               enable_que_end=True, imgque_vocab_size=dec["vocab"], torch_dtype=TORCH_NAMES[dtype])
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------
# Streaming writer
# ---------------------------------------------------------------------------------------------

def draw(name: str, shape: tuple, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()) ^ seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    leaf = name.rsplit(".", 1)[-1]
    lname = name.lower()
    if len(shape) == 1 and ("norm" in lname or "layrnorm" in lname) and leaf == "weight":
        return x.mul_(0.02).add_(1.0)
    return x.mul_(0.02)


def write_sharded(out: Path, tensors: list, dtype: str, shard_bytes: int, seed: int) -> None:
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    size = lambda shape: itemsize * int(torch.Size(shape).numel())
    shards, current, current_bytes = [], [], 0
    for name, shape in tensors:
        if current and current_bytes + size(shape) > shard_bytes:
            shards.append(current)
            current, current_bytes = [], 0
        current.append((name, shape))
        current_bytes += size(shape)
    shards.append(current)
    total = sum(size(s) for _, s in tensors)
    params = sum(int(torch.Size(s).numel()) for _, s in tensors)
    print(f"{out}: {len(tensors)} tensors, {params / 1e9:.3f} B parameters, {total / 1e9:.2f} GB in {len(shards)} shard(s)",
          flush=True)
    from safetensors.torch import save_file
    weight_map = {}
    start = time.perf_counter()
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        data = {name: draw(name, shape, DTYPES[dtype], seed) for name, shape in shard}
        tmp = out / (fname + ".partial")
        save_file(data, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out / fname)
        del data
        weight_map.update({name: fname for name, _ in shard})
        print(f"  {fname}: {sum(size(s) for _, s in shard) / 1e9:.2f} GB ({time.perf_counter() - start:.0f} s)", flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def streamed(args) -> None:
    out = args.out
    if (out / "config.json").exists() and (out / "model.safetensors.index.json").exists():
        print(f"{out}: exists")
        return
    out.mkdir(parents=True, exist_ok=True)
    if args.kind == "llava":
        tensors, v, l = llava_spec(args.shape)
        config = llava_config(v, l, args.dtype)
        copies = [(FIXTURE / n, out / n) for n in ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]]
        extra = {}
    else:
        tensors, v, l, dec = imgque_spec(args.shape, args.decoder_layers)
        config = imgque_config(v, l, dec, args.dtype, clip_vocab=300)
        copies = [(IMGQUE_FIXTURE / n, out / n) for n in ["tokenizer.json", "tokenizer_config.json"]]
        copies.append((IMGQUE_FIXTURE / "clip" / "tokenizer.json", out / "clip" / "tokenizer.json"))
        extra = {"preprocessor_config.json": json.dumps(dict(
            image_processor_type="Phi3VImageProcessor", num_crops=NUM_CROPS,
            image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
            do_convert_rgb=True), indent=2) + "\n"}
    for src, dst in copies:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    for name, text in extra.items():
        (out / name).write_text(text)
    write_sharded(out, tensors, args.dtype, int(args.shard_gb * 1e9), args.seed)
    # config.json last: its presence (with the index) marks a complete folder.
    (out / "config.json").write_text(config if config.endswith("\n") else config + "\n")
    print(f"{out}: written ({args.kind}, {args.shape}, {args.dtype})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dtype", choices=list(DTYPES), default=None)
    ap.add_argument("--shape", choices=["7b", "1b", "tiny"], default=None)
    ap.add_argument("--kind", choices=["llava", "imgque"], default="llava")
    ap.add_argument("--shard-gb", type=float, default=None, help="shard size in GB (default 3; tiny 0.002)")
    ap.add_argument("--decoder-layers", type=int, default=None, help="imgque query-decoder layers (default 12; tiny 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.shape is None:
        if args.kind != "llava":
            sys.exit("--kind imgque needs --shape 7b|1b|tiny")
        legacy(args.out, args.dtype or "f32")
        return
    args.dtype = args.dtype or "bf16"
    if args.shard_gb is None:
        args.shard_gb = 0.002 if args.shape == "tiny" else 3.0
    if args.decoder_layers is None:
        args.decoder_layers = 2 if args.shape == "tiny" else 12
    streamed(args)


if __name__ == "__main__":
    main()
