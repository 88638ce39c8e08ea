"""End-to-end report time: a generated 512x512x300 CT file -> read -> preprocess -> encode -> 256 tokens.

    python bench/e2e.py                                     # GPU: ViT-B/16 + Phi-3-mini-shaped decoder, bf16
    python bench/e2e.py --shape tiny --device cpu --shape-zyx 60,128,128 --new-tokens 16 --runs 2   # smoke run

Weights are random (no DINO / Phi-3 weights here): the `ctscribe` preset with its encoder
un-pretrained and its decoder a Llama-family LM of Phi-3-mini's sizes (32 layers, 3072 wide,
8192 MLP, 32 heads; the same weight bytes per token as Phi-3-mini except the smaller test
vocabulary), LoRA merged, fast decode on. Generation is forced to `--new-tokens` tokens (stop
tokens suppressed) so every run decodes the same length. Prints per-stage p50 and the
total p50/p95 over `--runs` (after one warm-up), peak GPU memory, and writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import environment, peak_gpu_gib, sync, write_json  # noqa: E402

PHI3_MINI = dict(hidden_size=3072, n_layers=32, n_heads=32, n_kv_heads=32, intermediate_size=8192,
                 max_position_embeddings=4096)


def build_pipeline(shape: str, device: torch.device):
    import model
    from model.config import ModelConfig

    if shape == "tiny":
        return model.build("tiny", device=device)
    cfg = ModelConfig.from_preset("ctscribe")
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    cfg = cfg.replace(
        name="e2e-phi3-mini-random",
        encoder=replace(cfg.encoder, pretrained=""),
        decoder=replace(cfg.decoder, name_or_path="", tokenizer="tiny-bpe", dtype=dtype, **PHI3_MINI),
    )
    pipe = model.build(cfg, device=device)
    if device.type == "cuda":
        pipe.model.to(torch.bfloat16)
    return pipe


def write_series(path: Path, shape_zyx: tuple[int, int, int]) -> Path:
    from imaging.phantom import PhantomConfig, generate_case
    from imaging.phantom.dataset import write_nifti

    z, y, x = shape_zyx
    cfg = PhantomConfig(shape_zyx=shape_zyx, spacing_mm_zyx=(300.0 / z, 350.0 / y, 350.0 / x))
    return write_nifti(generate_case(11, config=cfg).volume, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("phi3-mini", "tiny"), default="phi3-mini")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape-zyx", default="300,512,512")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-fast", action="store_true", help="decode with HF's dynamic cache instead")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from imaging.read import read_volume
    from model.generation import GenerationParams

    device = torch.device(args.device)
    shape_zyx = tuple(int(v) for v in args.shape_zyx.split(","))
    pipe = build_pipeline(args.shape, device)
    pipe.merge()
    if not args.no_fast:
        pipe.enable_fast_decode()
    pipe._stop_ids = ()  # decode exactly --new-tokens tokens on random weights (benchmark only)
    params = GenerationParams(max_new_tokens=args.new_tokens)

    runs = []
    with tempfile.TemporaryDirectory(prefix="ctscribe-e2e-") as tmp:
        path = write_series(Path(tmp) / "ct.nii.gz", shape_zyx)
        for i in range(args.runs + 1):  # run 0 warms up (CUDA graphs, allocator, lazy init)
            sync(device)
            t0 = time.perf_counter()
            volume = read_volume(path)
            t1 = time.perf_counter()
            ct = pipe.prepare(volume.hu, volume.spacing_mm_zyx, volume.orientation_in)
            t2 = time.perf_counter()
            out = pipe.report([ct], params)[0]
            sync(device)
            t3 = time.perf_counter()
            if i:
                runs.append({"read": t1 - t0, "preprocess": t2 - t1, "encode": out.timings_s["encode"],
                             "generate": out.timings_s["generate"], "total": t3 - t0, "n_tokens": out.n_tokens})

    def p(key: str, q: float) -> float:
        values = sorted(r[key] for r in runs)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

    summary = {k: round(statistics.median(r[k] for r in runs), 4) for k in ("read", "preprocess", "encode", "generate")}
    summary |= {"total_p50": round(p("total", 0.5), 4), "total_p95": round(p("total", 0.95), 4),
                "tokens_per_s": round(runs[0]["n_tokens"] / summary["generate"], 1), "n_tokens": runs[0]["n_tokens"]}
    n_params = sum(t.numel() for t in pipe.model.parameters())
    print(f"{args.shape} ({n_params / 1e9:.2f} B params) on {device}, series {shape_zyx}, {args.new_tokens} tokens, "
          f"fast decode {'off' if args.no_fast else 'on'}")
    for key, value in summary.items():
        print(f"  {key:12s} {value}")
    peak = peak_gpu_gib(device)
    if peak is not None:
        print(f"  peak GPU memory {peak:.2f} GiB")
    write_json("e2e", {"shape": args.shape, "series_zyx": shape_zyx, "params": n_params, "fast": not args.no_fast,
                       "summary": summary, "runs": runs, "peak_gpu_gib": peak, "env": environment(device)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
