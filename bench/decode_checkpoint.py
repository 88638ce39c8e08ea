"""Decode speed of a real checkpoint (the bundled demo model by default), every decode path
side by side in one run, on the same prompt length and number of new tokens, batch 1:

- `hf_generate_base`: bare HF `generate` of the base LM (dynamic cache, as loaded) — the naive baseline;
- `pipeline_unmerged`: the pipeline's decoder with its LoRA adapters unmerged (dynamic cache);
- `merged_<form>_<cache>`: `Pipeline.for_inference` (LoRA merged) in float32, bfloat16 (on a CPU
  only with native bf16) and weight-only int8, each through the dynamic and the static cache;
- `report_256`: one whole `Pipeline.report` (encode + prefill + decode) of a phantom CT with
  up to 256 new tokens, in the serving form `--report-dtype` names (default auto, as served).

Greedy tokens of every path are compared with `pipeline_unmerged` (same_tokens). Run on an
idle machine: every other process steals memory bandwidth.

    python bench/decode.py --checkpoint model/weights/demo --device cpu
"""

from __future__ import annotations

import copy
import time

import torch

from bench._common import environment, timed, write_json


def _decode_row(name: str, run, n_new: int, device, repeats: int, reference=None) -> dict:
    seconds, ids = timed(run, device, repeats)
    row = {"path": name, "seconds": round(seconds, 4), "tokens_per_s": round(n_new / seconds, 2)}
    if reference is not None:
        row["same_tokens"] = ids == reference
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return row, ids


def _hf_generate_row(base, embeds, mask, n_new: int, device, repeats: int) -> dict:
    with torch.inference_mode():
        row, _ = _decode_row("hf_generate_base", lambda: base.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=n_new, min_new_tokens=n_new,
            do_sample=False, pad_token_id=0)[0].tolist(), n_new, device, repeats)
    return row


def measure_checkpoint(args) -> None:
    import model
    from model.base_lm import load_base_lm
    from model.generation import GenerationParams, fast_generate, generate
    from model.quantize import int8_matmul_available
    from model.runtime import configure_threads, cpu_has_native_bf16, decode_dtype

    device = torch.device(args.device)
    threads = configure_threads() if device.type == "cpu" else None
    n_new, t = args.new_tokens, args.prompt_len
    pipe = model.load(args.checkpoint, device=device)
    width = pipe.config.decoder.hidden_size
    g = torch.Generator().manual_seed(0)
    embeds = (torch.randn(1, t, width, generator=g) * 0.02).to(device)
    mask = torch.ones(1, t, dtype=torch.long, device=device)
    never = (-1,)  # no stop token: every path decodes exactly n_new tokens
    params = GenerationParams(max_new_tokens=n_new)
    rows = []

    rows.append(_hf_generate_row(load_base_lm(pipe.config.decoder).to(device).eval(), embeds, mask, n_new, device,
                                 args.repeats))

    row, reference = _decode_row("pipeline_unmerged", lambda: generate(pipe.model.decoder, embeds, mask, params, never)[0],
                                 n_new, device, args.repeats)
    rows.append(row)

    native_bf16 = device.type != "cpu" or cpu_has_native_bf16()
    forms = [torch.float32] + ([torch.bfloat16] if native_bf16 else []) + (["int8"] if int8_matmul_available() else [])
    for form in forms:
        served = copy.deepcopy(pipe).for_inference(form, fast_decode=True)
        name = form if isinstance(form, str) else str(form).removeprefix("torch.")
        cast = embeds.to(served.model.decoder.dtype)
        for cache, run in (("dynamic", lambda s=served, c=cast: generate(s.model.decoder, c, mask, params, never)[0]),
                           ("static", lambda s=served, c=cast: fast_generate(s._fast, c, mask, params, never)[0])):
            row, _ = _decode_row(f"merged_{name}_{cache}", run, n_new, device, args.repeats, reference)
            rows.append(row)
        del served

    from imaging.phantom import generate_case

    form = decode_dtype(args.report_dtype, device)
    served = pipe.for_inference(form)
    volume = generate_case(7).volume
    ct = served.prepare(volume.hu, volume.spacing_mm_zyx, volume.orientation_in)
    start = time.perf_counter()
    out = served.report([ct], GenerationParams(max_new_tokens=256), consistency="off")[0]
    seconds = time.perf_counter() - start
    e2e = {"path": "report_256", "seconds": round(seconds, 3), "n_tokens": out.n_tokens,
           "decode_form": str(form or "config").removeprefix("torch."), "timings_s": out.timings_s}
    print(" ".join(f"{k}={v}" for k, v in e2e.items()), flush=True)

    by = {r["path"]: r["tokens_per_s"] for r in rows}
    best = max((r for r in rows if r["path"].startswith("merged_")), key=lambda r: r["tokens_per_s"])
    ratios = {"best_merged_path": best["path"], "best_over_hf_generate": round(best["tokens_per_s"] / by["hf_generate_base"], 2),
              "best_over_unmerged": round(best["tokens_per_s"] / by["pipeline_unmerged"], 2)}
    print(" ".join(f"{k}={v}" for k, v in ratios.items()))
    write_json("decode_checkpoint", {"checkpoint": args.checkpoint, "prompt_len": t, "new_tokens": n_new,
                                     "threads": threads, "env": environment(device), "rows": rows, "ratios": ratios,
                                     "report": e2e}, args.out)
