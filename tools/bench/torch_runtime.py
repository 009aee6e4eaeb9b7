"""PyTorch side of the runtime benchmark: same checkpoint, same measurements as
crates/model/benches/runtime.rs (vision tower, LLM prefill, decode), printed as one JSON object.

usage: python tools/bench/torch_runtime.py DIR [--decode-tokens N] [--repeat K] [--dtype f32|bf16|f16]
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import LlavaForConditionalGeneration

VICUNA = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions. USER: <image>\nDescribe the image in detail. ASSISTANT:")


def timed(repeat, fn):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm(n, repeat):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(repeat, lambda: a @ b) / 1e9


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    args = ap.parse_args()
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    from transformers import AutoTokenizer
    model = LlavaForConditionalGeneration.from_pretrained(args.dir, dtype=dtype, attn_implementation="sdpa").eval()
    tok = AutoTokenizer.from_pretrained(args.dir)
    image_id = model.config.image_token_index
    ids = tok(VICUNA).input_ids
    pos = ids.index(image_id)
    ids = ids[:pos] + [image_id] * 576 + ids[pos + 1:]
    input_ids = torch.tensor([ids])
    pixel_values = torch.randn(1, 3, 336, 336).to(dtype)
    lm, head = model.model.language_model, model.lm_head

    def vision():
        # What LlavaModel.get_image_features does for layer -2 / "default": drop CLS, project.
        out = model.model.vision_tower(pixel_values, output_hidden_states=True)
        return model.model.multi_modal_projector(out.hidden_states[-2][:, 1:])

    feats = vision()
    embeds = lm.embed_tokens(input_ids)
    mask = input_ids == image_id
    embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats.reshape(-1, embeds.shape[-1]))

    def prefill():
        out = lm(inputs_embeds=embeds, use_cache=True)
        return out, head(out.last_hidden_state[:, -1:])

    vision_s = timed(args.repeat, vision)
    prefill_s = timed(args.repeat, prefill)
    out, _ = prefill()
    past = out.past_key_values
    nxt = torch.tensor([[1]])
    step = lm(input_ids=nxt, past_key_values=past, use_cache=True)
    past = step.past_key_values
    start = time.perf_counter()
    for _ in range(args.decode_tokens):
        step = lm(input_ids=nxt, past_key_values=past, use_cache=True)
        past = step.past_key_values
        head(step.last_hidden_state)
    decode_s = (time.perf_counter() - start) / args.decode_tokens
    print(json.dumps({
        "impl": f"pytorch {torch.__version__}",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "gemm_f32_gflops": {"1024": gemm(1024, 5), "2048": gemm(2048, 3)},
        "prompt_tokens": len(ids),
        "vision_s": vision_s,
        "prefill_s": prefill_s,
        "prefill_tokens_per_s": len(ids) / prefill_s,
        "decode_tokens_per_s": 1 / decode_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
