"""Decode speed: the static-cache / CUDA-graph path against HF `generate`, same model, same run.

    python bench/decode.py                      # Phi-3-mini shape, random bf16 weights, on CUDA
    python bench/decode.py --shape tiny --device cpu --batches 1,4 --new-tokens 32   # a smoke run
    python bench/decode.py --checkpoint model/weights/demo --device cpu   # a real checkpoint, every
                                                        # decode path at batch 1 (bench/decode_checkpoint.py)

Both paths decode exactly `--new-tokens` tokens from a `--prompt-len` inputs_embeds prompt
(no EOS), greedy; tokens/s counts generated tokens over all rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import environment, peak_gpu_gib, timed, write_json  # noqa: E402
from model.fast_decode import FastDecoder, SamplingConfig  # noqa: E402

SHAPES = {
    # microsoft/Phi-3-mini-4k-instruct's config.json sizes (3.82 B parameters).
    "phi3-mini": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096),
}


def build_decoder(shape: str, device: torch.device, dtype: torch.dtype):
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(**SHAPES[shape], pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        lm = Phi3ForCausalLM(config)
    return lm.to(dtype).eval()


def measure_batch(lm, fast: FastDecoder, batch: int, args, device: torch.device, dtype: torch.dtype) -> dict:
    cfg = SamplingConfig(max_new_tokens=args.new_tokens)
    embeds = torch.randn(batch, args.prompt_len, lm.config.hidden_size, device=device, dtype=dtype) * 0.02
    mask = torch.ones(batch, args.prompt_len, dtype=torch.long, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fast_s, fast_ids = timed(lambda: fast.generate(embeds, mask, cfg), device, args.repeats)
    row = {"batch": batch, "fast_s": fast_s, "fast_tokens_per_s": batch * args.new_tokens / fast_s,
           "fast_peak_gib": peak_gpu_gib(device)}
    if not args.skip_hf:
        hf_s, hf_ids = timed(lambda: lm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0), device, args.repeats)
        row.update(hf_s=hf_s, hf_tokens_per_s=batch * args.new_tokens / hf_s,
                   speedup=hf_s / fast_s, same_tokens=bool(torch.equal(hf_ids, fast_ids)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="phi3-mini")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--prompt-len", type=int, default=320, help="visual tokens + prompt text")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-hf", action="store_true", help="only the fast path")
    parser.add_argument("--out", default=None)
    parser.add_argument("--checkpoint", default=None,
                        help="measure this checkpoint's decode paths at batch 1 instead (bench/decode_checkpoint.py)")
    parser.add_argument("--report-dtype", default="auto", help="--checkpoint: the serving form of the whole-report row")
    args = parser.parse_args()
    if args.checkpoint:
        from bench.decode_checkpoint import measure_checkpoint

        return measure_checkpoint(args)

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    lm = build_decoder(args.shape, device, dtype)
    n_params = sum(p.numel() for p in lm.parameters())
    fast = FastDecoder(lm)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        row = measure_batch(lm, fast, batch, args, device, dtype)
        rows.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    write_json("decode", {"shape": args.shape, "params": n_params, "dtype": str(dtype), "prompt_len": args.prompt_len,
                          "new_tokens": args.new_tokens, "env": environment(device), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
