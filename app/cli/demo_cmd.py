"""`ctscribe demo`: a new phantom through the whole path on the bundled demo checkpoint.

Generates a chest phantom the model has never seen (a fresh seed), writes its report, answers
one multiple-choice and one free-text question, and prints them next to the ground truth the
phantom was drawn from, with timings and each result's warnings (the consistency guard's
disagreements between report and label head; `model_not_trained_on_real_ct` never fires
here, the input being a phantom). Framework progress bars and deprecation notices are
switched off where they arise (model/progress_bars.py, model/decoder.py).
"""

from __future__ import annotations

import argparse
import json
import time

from app.cli.report_cmd import add_decode_dtype_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="report + questions on a new phantom with the bundled demo model",
                                   description=__doc__)
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint dir or hub id (default: the bundled demo checkpoint; 'tiny' = random)")
    parser.add_argument("--seed", type=int, default=None, help="phantom seed (default: from the clock)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_decode_dtype_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.cli.report_cmd import load_pipeline
    from imaging.phantom import generate_case
    from model.generation import GenerationParams
    from model.provenance import attach, input_warnings

    seed = args.seed if args.seed is not None else time.time_ns() % 2**31
    timings: dict[str, float] = {}

    start = time.perf_counter()
    pipe = load_pipeline(args.checkpoint, decode_dtype=args.decode_dtype)
    timings["load_model"] = time.perf_counter() - start

    start = time.perf_counter()
    case = generate_case(seed)  # the default phantom geometry, as the demo model was trained on
    timings["phantom"] = time.perf_counter() - start

    start = time.perf_counter()
    volume = case.volume
    ct = pipe.prepare(volume.hu, volume.spacing_mm_zyx, volume.orientation_in)
    timings["preprocess"] = time.perf_counter() - start

    params = GenerationParams(max_new_tokens=args.max_new_tokens)
    mcq = next(q for q in case.questions if q["kind"] == "mcq")
    free = next(q for q in case.questions if q["kind"] == "free")

    start = time.perf_counter()
    report = pipe.report([ct], params)[0]
    timings["report"] = time.perf_counter() - start
    start = time.perf_counter()
    choice = pipe.choose([ct], [mcq["question"]], [mcq["choices"]])[0]
    timings["multiple_choice"] = time.perf_counter() - start
    start = time.perf_counter()
    answer = pipe.answer([ct], [free["question"]], params)[0]
    timings["free_text"] = time.perf_counter() - start
    attach([report, choice, answer], input_warnings(pipe.trained_on, volume.source_hint))

    result = {
        "phantom_seed": seed,
        "model": {"source": getattr(pipe, "source", ""), "model_hash": pipe.model_hash,
                  "weights_hash": pipe.weights_hash, "trained_on": pipe.trained_on,
                  "trained_labels": list(pipe.guided_labels)},
        "ground_truth": {
            "findings": case.report.get("Findings_EN", ""),
            "impression": case.report.get("Impressions_EN", ""),
            "labels": [name for name, v in case.labels.items() if v],
        },
        "report": report.to_dict(),
        "multiple_choice": {"question": mcq["question"], "choices": mcq["choices"], "truth": mcq["answer"],
                            **choice.to_dict()},
        "free_text": {"question": free["question"], "truth": free["answer"], **answer.to_dict()},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "disclaimer": "Research use only; not for clinical decision-making.",
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result)
    return 0


def _print_human(r: dict) -> None:
    line = "-" * 78
    print(f"ctscribe demo  (phantom seed {r['phantom_seed']}, model {r['model']['model_hash']})\n{line}")
    print("GENERATED REPORT\n" + r["report"]["text"].strip())
    if r["report"].get("guidance"):
        print("\nwhat the vision side saw (told to the decoder):\n  " + r["report"]["guidance"].replace("\n", "\n  "))
    trained = set(r["model"]["trained_labels"] or r["report"]["labels"])  # untrained outputs are noise
    top = sorted(((n, p) for n, p in r["report"]["labels"].items() if n in trained), key=lambda kv: -kv[1])[:5]
    print("\nlabel head (top 5 of the labels it was trained on): " + ", ".join(f"{n} {p:.2f}" for n, p in top))
    _print_warnings(r["report"]["warnings"])
    print(f"{line}\nGROUND TRUTH\nFindings: {r['ground_truth']['findings']}")
    print(f"Impression: {r['ground_truth']['impression']}")
    print(f"Labels: {', '.join(r['ground_truth']['labels']) or 'none'}\n{line}")
    mc = r["multiple_choice"]
    options = "  ".join(f"{chr(97 + i)}. {c}" for i, c in enumerate(mc["choices"]))
    print(f"Q (multiple choice): {mc['question']}\n  {options}")
    probs = ", ".join(f"{p:.2f}" for p in mc["probabilities"])
    print(f"  model: {mc['letter']}. {mc['answer']}  (p = {probs})   truth: {mc['truth']}")
    _print_warnings(mc["warnings"], indent="  ")
    ft = r["free_text"]
    print(f"Q (free text): {ft['question']}\n  model: {ft['text'].strip()}\n  truth: {ft['truth']}")
    _print_warnings(ft["warnings"], indent="  ")
    print(line)
    print("timings (s): " + ", ".join(f"{k} {v}" for k, v in r["timings_s"].items()))
    print(r["disclaimer"])


def _print_warnings(warnings: list[dict], indent: str = "") -> None:
    """The same one-line form as `ctscribe report` (`warning: <code>: <message>`), in place."""
    for w in warnings:
        print(f"{indent}warning: {w['code']}: {w['message']}")
