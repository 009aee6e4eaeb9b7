"""Writes a random-weight LLaVA-1.5-shaped checkpoint for speed benchmarks: CLIP ViT-L/14-336
vision tower and a ~1.1B Llama (TinyLlama shapes: hidden 2048, 22 layers, 32 heads, 4 KV heads),
in the llava-hf layout, with the tiny fixture tokenizer (ids stay far below the vocab). Stored in
f32, or with --dtype bf16/f16 in that type (what real checkpoints ship; the same seed, so the
16-bit weights are the f32 ones rounded).

usage: python tools/bench/make_bench_model.py OUT_DIR [--dtype f32|bf16|f16]
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "crates/model/tests/fixtures/llava"


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def main(out: Path, dtype: str) -> None:
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


if __name__ == "__main__":
    args = sys.argv[1:]
    dtype = args[args.index("--dtype") + 1] if "--dtype" in args else "f32"
    if dtype not in DTYPES:
        sys.exit(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    main(Path(args[0]), dtype)
